"""The files delivery kind on a real folder: rotation by size and by age, crash recovery beside a live
writer, the folder's quota, and a flush before a handover."""

from __future__ import annotations

import asyncio
import fcntl
import json
from pathlib import Path

from connectors.api import SinkRecord
from connectors.files.sink import BatchFileSink
from connectors.testing.sink_kit import SUBSCRIBER, DeliveryKindConformance, delivery_record


class _Files(DeliveryKindConformance):
    kind = "files"

    def __init__(self, quota: int | None = None, **config):
        self._config, self._quota = config, quota

    def config(self, root):
        return self._config

    def lends(self, root):
        return {"files_root": str(root), "files_quota_bytes": self._quota}


def finished(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jsonl"))


def keys(paths: list[Path]) -> list[str]:
    return [json.loads(line)["idempotency_key"] for path in paths for line in path.read_text().splitlines()]


def key(n: int) -> str:
    return delivery_record(n)[1]["idempotency_key"]


def record(n: int) -> SinkRecord:
    return delivery_record(n)[0]


async def test_an_open_batch_is_only_under_its_temp_name_and_is_finished_on_stop(tmp_path):
    folder = tmp_path / SUBSCRIBER.id
    async with _Files().started(tmp_path) as sink:
        assert [o.status for o in await sink.write([record(1), record(2)])] == ["delivered"] * 2
        assert finished(folder) == []
        [temp] = folder.glob(".open-*.jsonl.tmp")
        assert temp.read_bytes().count(b"\n") == 2  # fsynced before `delivered`
    assert keys(finished(folder)) == [key(1), key(2)]
    assert not list(folder.glob(".open-*")) and not list(folder.glob(".new-*"))


async def test_a_batch_file_is_finished_when_it_reaches_max_bytes(tmp_path):
    folder = tmp_path / SUBSCRIBER.id
    async with _Files(max_bytes=64 << 10).started(tmp_path) as sink:
        n = 0
        while len(finished(folder)) < 2:
            await sink.write([record(i) for i in range(n, n + 50)])
            n += 50
        assert all(f.stat().st_size >= 64 << 10 for f in finished(folder))
    assert keys(finished(folder)) == [key(i) for i in range(n)]  # names sort in the order written


async def test_a_batch_file_is_finished_at_max_events_lines_even_within_one_write(tmp_path):
    folder = tmp_path / SUBSCRIBER.id
    async with _Files(max_events=100).started(tmp_path) as sink:
        await sink.write([record(i) for i in range(230)])  # 100 + 100, and 30 left open
        assert [len(f.read_text().splitlines()) for f in finished(folder)] == [100, 100]
        await sink.write([record(i) for i in range(230, 300)])
        assert [len(f.read_text().splitlines()) for f in finished(folder)] == [100, 100, 100]
    assert keys(finished(folder)) == [key(i) for i in range(300)]


async def test_lines_already_fsynced_count_as_delivered_when_the_disk_fails_later_in_the_write(tmp_path):
    folder = tmp_path / SUBSCRIBER.id
    async with _Files(max_events=100).started(tmp_path) as sink:
        made = sink._new_temp

        def second_file_fails():  # the disk fills up after the first file
            if list(folder.glob("*.jsonl")):
                raise OSError(28, "No space left on device")
            return made()

        sink._new_temp = second_file_fails
        outcomes = await sink.write([record(i) for i in range(150)])
        sink._new_temp = made
    assert [o.status for o in outcomes] == ["delivered"] * 100 + ["retry"] * 50
    assert keys(finished(folder)) == [key(i) for i in range(100)]  # written once: no line is retried twice


async def test_a_batch_file_is_finished_when_its_first_line_is_older_than_max_age(tmp_path):
    async with _Files(max_age_s=1).started(tmp_path) as sink:
        await sink.write([record(1)])
        async with asyncio.timeout(10):
            while not finished(tmp_path / SUBSCRIBER.id):
                await asyncio.sleep(0.05)  # poll interval inside a deadline
        assert keys(finished(tmp_path / SUBSCRIBER.id)) == [key(1)]


async def test_flush_makes_the_open_batch_visible_at_once(tmp_path):
    async with _Files().started(tmp_path) as sink:
        await sink.write([record(1)])
        await sink.flush()  # as before a handover of partitions
        assert keys(finished(tmp_path / SUBSCRIBER.id)) == [key(1)]


async def test_a_temp_file_left_by_a_crash_is_finished_but_a_live_writers_is_not(tmp_path):
    folder = tmp_path / SUBSCRIBER.id
    folder.mkdir()
    (folder / ".open-crashed.jsonl.tmp").write_bytes(b'{"idempotency_key": "left-behind", "event": {}}\n')
    with open(folder / ".open-other-worker.jsonl.tmp", "ab") as live:  # noqa: ASYNC230 (held open as another worker does)
        fcntl.flock(live, fcntl.LOCK_EX | fcntl.LOCK_NB)
        live.write(b'{"idempotency_key": "still-open", "event": {}}\n')
        live.flush()
        async with _Files().started(tmp_path):
            assert keys(finished(folder)) == ["left-behind"]
            assert (folder / ".open-other-worker.jsonl.tmp").exists(), "another worker's open batch was taken"


async def test_two_writers_share_a_folder_and_lose_nothing(tmp_path):
    folder = tmp_path / SUBSCRIBER.id
    async with _Files().started(tmp_path) as one, _Files().started(tmp_path) as two:
        for n in range(0, 40, 2):
            await one.write([record(n)])
            await two.write([record(n + 1)])
            await (one if n % 4 else two).flush()
    assert sorted(keys(finished(folder))) == sorted(key(n) for n in range(40))


async def test_a_folder_over_its_quota_answers_retry_until_the_subscriber_takes_files(tmp_path):
    folder = tmp_path / SUBSCRIBER.id
    async with _Files(quota=2 << 10).started(tmp_path) as sink:
        statuses = []
        for n in range(20):
            [outcome] = await sink.write([record(n)])
            statuses.append(outcome.status)
            await sink.flush()
        assert "delivered" in statuses and statuses[-1] == "retry", statuses
        for path in finished(folder):
            path.unlink()  # the subscriber takes its files
        assert (await sink.write([record(99)]))[0].status == "delivered"


def test_files_delivery_is_refused_while_the_operator_has_not_set_a_folder():
    config = BatchFileSink.parse_config({})
    assert "SAMBAND_FILES_OUTBOUND_DIR" in (BatchFileSink.refusal(config, "s", {"files_root": ""}) or "")
    assert BatchFileSink.refusal(config, "s", {"files_root": "/srv/outbound"}) is None
