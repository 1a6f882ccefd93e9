"""The batch-file sink on a real tmp dir: per-subscription files, atomic rename, rotation by size and by age."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from support import dead_letter_key, pseudonym_key

from connectors.api import SinkRecord
from connectors.files.sink import TEMP_NAME, BatchFileSink
from connectors.runtime import open_connector

pytestmark = pytest.mark.kafka  # the runtime that builds a connector's context needs the broker


def delivery(subscription: str, n: int) -> SinkRecord:
    value = {"idempotency_key": f"event-{n}.{subscription}", "subscription": subscription, "person": f"p{n:04d}",
             "event": {"id": f"event-{n}", "type": "no.samband.events.Move", "data": {}}, "kind": "event"}  # fmt: skip
    return SinkRecord(key=f"{subscription}/p{n:04d}".encode(), value=json.dumps(value).encode())


@asynccontextmanager
async def sink(connector_kafka, connector_app_id, folder: Path, **config):
    raw = {"directory": str(folder), **config}
    async with open_connector(
        BatchFileSink,
        "files-out",
        raw,
        bootstrap=connector_kafka,
        app_id=connector_app_id,
        pseudonym_key=pseudonym_key(),
        dead_letter_key=dead_letter_key(),
    ) as opened:
        yield opened


def finished(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jsonl"))


def lines(paths: list[Path]) -> list[dict]:
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()]


async def test_records_go_to_their_subscription_and_appear_only_as_a_finished_file_on_stop(
    connector_kafka, connector_app_id, tmp_path
):
    batch = [delivery("bergen-skole", 1), delivery("oslo-nav", 2), delivery("bergen-skole", 3)]
    async with sink(connector_kafka, connector_app_id, tmp_path) as opened:
        outcomes = await opened.write(batch)
        assert [o.status for o in outcomes] == ["delivered"] * 3
        assert finished(tmp_path / "bergen-skole") == [], "an open batch is only under its temp name"
        assert (tmp_path / "bergen-skole" / TEMP_NAME).read_bytes().count(b"\n") == 2  # fsynced before `delivered`
    assert [line["idempotency_key"] for line in lines(finished(tmp_path / "bergen-skole"))] == [
        "event-1.bergen-skole", "event-3.bergen-skole"]  # fmt: skip
    assert [line["person"] for line in lines(finished(tmp_path / "oslo-nav"))] == ["p0002"]
    assert not list(tmp_path.glob(f"*/{TEMP_NAME}"))


async def test_a_batch_file_is_finished_when_it_reaches_max_bytes(connector_kafka, connector_app_id, tmp_path):
    size = len(delivery("s", 1).value) + 1
    async with sink(connector_kafka, connector_app_id, tmp_path, max_bytes=size * 3) as opened:
        for n in range(7):
            await opened.write([delivery("s", n)])
        files = finished(tmp_path / "s")
        assert [len(f.read_text().splitlines()) for f in files] == [3, 3]
    assert [line["person"] for line in lines(finished(tmp_path / "s"))] == [f"p{n:04d}" for n in range(7)]


async def test_a_batch_file_is_finished_when_its_first_line_is_older_than_max_age(
    connector_kafka, connector_app_id, tmp_path
):
    async with sink(connector_kafka, connector_app_id, tmp_path, max_age_s=0.2, check_interval_s=0.05) as opened:
        await opened.write([delivery("s", 1)])
        async with asyncio.timeout(10):
            while not finished(tmp_path / "s"):
                await asyncio.sleep(0.05)  # poll interval inside a deadline
        await opened.write([delivery("s", 2)])  # a new batch
        assert (tmp_path / "s" / TEMP_NAME).exists()
        assert [line["person"] for line in lines(finished(tmp_path / "s"))] == ["p0001"]


async def test_a_temp_file_left_by_a_crash_is_finished_at_start(connector_kafka, connector_app_id, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / TEMP_NAME).write_bytes(delivery("s", 9).value + b"\n")
    async with sink(connector_kafka, connector_app_id, tmp_path):
        assert [line["person"] for line in lines(finished(tmp_path / "s"))] == ["p0009"]
        assert not (tmp_path / "s" / TEMP_NAME).exists()


async def test_a_record_without_a_usable_subscription_is_rejected(connector_kafka, connector_app_id, tmp_path):
    bad = SinkRecord(key=b"../etc/x", value=b'{"subscription": "../etc"}')
    async with sink(connector_kafka, connector_app_id, tmp_path) as opened:
        outcomes = await opened.write([bad, delivery("s", 1)])
    assert [(o.status, o.reason) for o in outcomes] == [("rejected", "file.malformed_delivery"), ("delivered", None)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
