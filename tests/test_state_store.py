"""The on-disk tables (bus/store.py): a dict's behaviour per partition, RocksDB underneath, files cleaned up."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest
from aiokafka import ConsumerRecord

from bus.state import PartitionedState, SegmentedState
from bus.store import FLUSH_EVERY, DiskStore


def _key(partition: int, key: str) -> bytes:
    return partition.to_bytes(4, "big") + key.encode()


def test_a_disk_table_behaves_as_the_dict_it_replaces_and_keeps_partitions_apart(tmp_path):
    store = DiskStore.open(tmp_path, "router-persons", cache_mb=16)
    zero, one = store.table(0), store.table(1)
    zero["p1"] = b"a"
    one["p1"] = b"b"
    zero["tom"] = b""
    assert (zero.get("p1"), one.get("p1"), zero.get("p2", b"none"), zero.get("tom")) == (b"a", b"b", b"none", b"")
    zero.flush()
    one.flush()
    zero["p2"] = b"c"
    assert zero.pop("p1") == b"a"
    assert zero.pop("p1", "gone") == "gone"
    assert "p1" not in zero and "p2" in zero
    assert dict(zero.items()) == {"p2": b"c", "tom": b""} and dict(one.items()) == {"p1": b"b"}

    zero.flush()
    store.drop(1)  # given up: its keys are gone from RocksDB, partition 0's are not
    assert store.db.get(_key(1, "p1")) is None
    assert store.db.get(_key(0, "p2")) == b"c"
    store.close()


def test_writes_reach_rocksdb_at_a_flush_or_when_many_wait(tmp_path):
    store = DiskStore.open(tmp_path, "router-persons", cache_mb=16)
    table = store.table(0)
    table["p"] = b"x"
    assert store.db.get(_key(0, "p")) is None  # waiting for the batch's end
    table.flush()
    assert store.db.get(_key(0, "p")) == b"x"
    for i in range(FLUSH_EVERY):
        table[f"k{i}"] = b"v"
    assert store.db.get(_key(0, "k0")) == b"v"  # a long recovery does not hold its writes in memory
    store.close()


def _segment(partition: int, timestamp_ms: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord("router-records", partition, 0, timestamp_ms, 0, b"k", value, None, 1, len(value), [])


def test_a_routing_record_expires_its_retention_after_it_was_set_or_after_its_segment_was_written(tmp_path):
    import time

    records = SegmentedState(
        "router-records", {}, DiskStore.open(tmp_path, "router-records", cache_mb=16), retention_seconds=3600
    )
    records.partitions = {0: records.disk.table(0, records.encode, records.decode)}  # type: ignore[union-attr]
    records.set(0, "event-set-now", ("skole",))
    now_ms = int(time.time() * 1000)
    records._apply(records.partitions[0], _segment(0, now_ms - 7_200_000, b'{"event-old": ["skole"]}'))
    records._apply(records.partitions[0], _segment(0, now_ms - 60_000, b'{"event-recent": ["skole", "sfo"]}'))
    records.take()
    assert records.get(0, "event-set-now") == ("skole",)
    assert records.get(0, "event-recent") == ("skole", "sfo")
    assert records.get(0, "event-old") is None
    assert dict(records.partitions[0].items()) == {"event-set-now": ("skole",), "event-recent": ("skole", "sfo")}
    records.close()


def test_a_malformed_person_state_on_disk_takes_the_safe_value(tmp_path):
    safe = b'{"protection":"strengtFortrolig","birth_date":null,"received":[]}'
    persons = PartitionedState(
        "router-persons", {}, check=lambda v: v.decode("ascii"), fail_closed=safe,
        disk=DiskStore.open(tmp_path, "router-persons", cache_mb=16),
    )  # fmt: skip
    persons.partitions = {0: persons.disk.table(0)}  # type: ignore[union-attr]
    record = ConsumerRecord("router-persons", 0, 0, 0, 0, b"p1", b"\xff\xfe", None, 2, 3, [])
    with pytest.raises(UnicodeDecodeError):
        persons._apply(persons.partitions[0], record)
    persons.flush()
    assert persons.get(0, "p1") == safe
    persons.close()


def test_a_state_is_opened_once_per_process_and_opened_again_empty(tmp_path):
    store, other = DiskStore.open(tmp_path, "router-persons", 16), DiskStore.open(tmp_path, "router-records", 16)
    table = store.table(0)
    table["p"] = b"x"
    table.flush()
    with pytest.raises(ValueError, match="open already"):
        DiskStore.open(tmp_path, "router-persons", cache_mb=16)
    assert store.db.get(_key(0, "p")) == b"x"  # (the refused open wiped nothing)
    store.close()
    again = DiskStore.open(tmp_path, "router-persons", cache_mb=16)
    assert again.db.get(_key(0, "p")) is None
    again.close()
    other.close()


def _in_a_worker(tmp_path, state: str, then: str, checkpoint_hours: float = 0) -> str:
    """Run `then` in a process of its own with `state` open as `s` on the data directory `tmp_path`;
    the last line it printed (after any log line). `os._exit(0)` in `then` ends it as a kill -9 would."""
    return subprocess.run(
        [sys.executable, "-c",
         "import sys, os; from pathlib import Path; from bus.store import DiskStore; from bus.assignor import worker_id; "
         f"s = DiskStore.open(Path(sys.argv[1]), {state!r}, 16, checkpoint_hours={checkpoint_hours}); " + then,
         str(tmp_path)],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()[-1]  # fmt: skip


def _worker_beside(tmp_path, checkpoint_hours: float = 0) -> tuple[subprocess.Popen, str]:
    """A worker process with a store open on the data directory `tmp_path`, and its directory's name;
    closing its stdin ends it without closing the store (as a kill -9 would)."""
    worker = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, os; from pathlib import Path; from bus.store import DiskStore; "
         f"s = DiskStore.open(Path(sys.argv[1]), 'router-records', 16, checkpoint_hours={checkpoint_hours}); "
         "print(s.path.parent.name, flush=True); sys.stdin.read(); os._exit(0)", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert worker.stdout is not None
    return worker, worker.stdout.readline().strip()


def test_only_this_worker_reads_its_files_and_they_are_removed_at_close_and_a_killed_workers_at_the_next_start(
    tmp_path,
):
    killed = _in_a_worker(  # a worker killed before it could remove its files
        tmp_path, "router-persons", "t = s.table(0); t['p'] = b'x'; t.flush(); print(s.path.parent.name); os._exit(0)"
    )
    state = tmp_path / "state"
    assert (state / killed / "router-persons").is_dir()

    store = DiskStore.open(tmp_path, "router-persons", cache_mb=16)
    mine = store.path.parent
    assert stat.S_IMODE(mine.stat().st_mode) == 0o700
    assert not (state / killed).exists()
    running, other = _worker_beside(tmp_path)  # another worker on the same data directory, running
    try:
        assert mine.is_dir()  # its start left this worker's files alone
        store.close()
        assert not mine.exists()
        again = DiskStore.open(tmp_path, "router-persons", cache_mb=16)
        assert (state / other / "router-records").is_dir()  # and this start left the running one's
        again.close()
    finally:
        running.communicate("")


# --- checkpoints: a cleanly stopped worker's files taken over by the next ----------------------


TOPIC_ID = "t"  # the changelog topic's id, as the broker would give it


def _stopped_with_checkpoint(tmp_path, offsets: dict[int, int]):
    store = DiskStore.open(tmp_path, "router-persons", cache_mb=16, checkpoint_hours=1)
    for partition in (0, 1):
        table = store.table(partition)
        table[f"p{partition}"] = b"x"
        table.flush()
    directory = store.path.parent
    store.close(offsets, TOPIC_ID)
    return directory


def test_a_store_closed_with_a_checkpoint_is_taken_over_and_resumed_from_its_offsets(tmp_path):
    directory = _stopped_with_checkpoint(tmp_path, {0: 42})
    assert (directory / "router-persons.checkpoint").is_file() and (directory / "router-persons").is_dir()

    store = DiskStore.open(tmp_path, "router-persons", cache_mb=16, checkpoint_hours=1)
    assert store.path.parent == directory
    # Deleted as it is taken over, before anything is written: a crash from here resumes nothing.
    assert not (directory / "router-persons.checkpoint").exists()
    assert store.resume(0, TOPIC_ID) == 42 and store.resume(0, TOPIC_ID) is None  # once
    assert store.resume(1, TOPIC_ID) is None  # not named in the checkpoint: read whole
    assert store.table(0, resumed=True).get("p0") == b"x"
    assert store.db.get(_key(1, "p1")) is None  # emptied when the files were taken over
    store.close()
    assert not directory.exists()


def test_a_checkpoint_is_not_taken_over_when_checkpoints_are_off_too_old_or_after_a_crash(tmp_path):
    import json
    import time

    directory = _stopped_with_checkpoint(tmp_path, {0: 42})
    off = DiskStore.open(tmp_path, "router-persons", cache_mb=16)  # checkpoint_hours 0
    assert off.path.parent != directory and not directory.exists()
    off.close()

    directory = _stopped_with_checkpoint(tmp_path, {0: 42})
    file = directory / "router-persons.checkpoint"
    checkpoint = json.loads(file.read_text())
    checkpoint["written_at"] = time.time() - 7200  # two hours ago; the file's own time (a copy's) does not count
    file.write_text(json.dumps(checkpoint))
    old = DiskStore.open(tmp_path, "router-persons", cache_mb=16, checkpoint_hours=1)
    assert old.resume(0, TOPIC_ID) is None and not directory.exists()
    old.close()

    directory = _stopped_with_checkpoint(tmp_path, {0: 42})
    taken = _in_a_worker(  # taken over, then killed: its files may now be ahead of the changelog
        tmp_path, "router-persons",
        "print(s.resume(0, 't')); t = s.table(0, resumed=True); t['p0'] = b'ahead'; t.flush(); os._exit(0)",
        checkpoint_hours=1,
    )  # fmt: skip
    assert taken == "42"
    after_crash = DiskStore.open(tmp_path, "router-persons", cache_mb=16, checkpoint_hours=1)
    assert after_crash.resume(0, TOPIC_ID) is None and not directory.exists()
    after_crash.close()


def test_a_partition_read_whole_more_than_a_week_ago_is_read_whole_again(tmp_path):
    import time

    import bus.store

    store = DiskStore.open(tmp_path, "router-persons", cache_mb=16, checkpoint_hours=1)
    store.table(0)
    store.table(1)
    store.read_whole_at[0] = time.time() - bus.store.FULL_READ_EVERY - 1  # resumed ever since
    store.close({0: 10, 1: 20}, TOPIC_ID)
    again = DiskStore.open(tmp_path, "router-persons", cache_mb=16, checkpoint_hours=1)
    assert (again.resume(0, TOPIC_ID), again.resume(1, TOPIC_ID)) == (None, 20)
    again.close()


def test_the_worker_that_takes_the_files_over_takes_the_stopped_workers_id_and_removes_a_killed_ones(tmp_path):
    """The id orders the workers in the co-partitioned assignment (bus/assignor.py): the same id,
    the same partitions again, and so the checkpoint's partitions are the ones resumed."""
    killed, killed_dir = _worker_beside(tmp_path, checkpoint_hours=1)  # beside the one that stops cleanly
    assert killed.stdin is not None
    stopped_id, stopped_dir = _in_a_worker(
        tmp_path, "router-persons", "s.table(0); print(worker_id().decode(), s.path.parent.name); s.close({0: 1}, 't')",
        checkpoint_hours=1,
    ).split()  # fmt: skip
    killed.stdin.close()
    killed.wait(30)
    state = tmp_path / "state"
    assert {p.name for p in state.iterdir()} == {killed_dir, stopped_dir}

    taken = _in_a_worker(
        tmp_path,
        "router-persons",
        "print(worker_id().decode(), s.path.parent.name, s.resume(0, 't'))",
        checkpoint_hours=1,
    ).split()
    assert taken == [stopped_id, stopped_dir, "1"]
    assert not (state / killed_dir).exists()  # removed at that start, whichever order they are found in


def test_a_state_checkpoints_only_partitions_it_reflects_exactly_and_nothing_while_a_write_is_unacknowledged(
    tmp_path,
):
    """Found by review: a cycle whose changelog write failed left the files ahead of the changelog,
    and a worker evicted before its stop had its partitions written by their new owner; a
    checkpoint at the broker's end offset would have claimed both. Neither may be checkpointed."""
    persons = PartitionedState("router-persons", {}, disk=DiskStore.open(tmp_path, "router-persons", cache_mb=16))
    persons.partitions = {0: persons.disk.table(0), 1: persons.disk.table(1)}  # type: ignore[union-attr]
    persons.reflects = {0: 10, 1: 5}  # as recovered: the changelog's ends then
    persons.set(0, "p", b"strengtFortrolig")
    assert persons.checkpoint({0: 10, 1: 5}) == {}  # a write waits for its batch's end
    pending = persons.take()
    assert persons.checkpoint({0: 10, 1: 5}) == {}  # taken (the files have it), not acknowledged
    persons.acknowledged(pending)
    assert persons.checkpoint({0: 11, 1: 5}) == {0: 11, 1: 5}
    assert persons.checkpoint({0: 11, 1: 6}) == {0: 11}  # partition 1 written by someone else since
    persons.set(0, "p", b"ugradert")
    persons.take()  # and its cycle given up in an outage: every partition is read again
    persons.drop({0, 1})
    persons.abandoned()
    persons.partitions, persons.reflects = {0: persons.disk.table(0)}, {0: 12}  # type: ignore[union-attr]
    assert persons.checkpoint({0: 12}) == {0: 12}  # (read again: nothing of it waited for any more)
    persons.close()


def test_a_checkpoint_of_another_topic_with_the_same_name_is_not_resumed(tmp_path):
    """A changelog deleted and made again, or the same app id on another cluster: its offsets are
    not those the files reflect."""
    _stopped_with_checkpoint(tmp_path, {0: 42})
    store = DiskStore.open(tmp_path, "router-persons", cache_mb=16, checkpoint_hours=1)
    assert store.resume(0, "another-topic-id") is None
    assert store.db.get(_key(0, "p0")) is None  # emptied: read whole
    store.close()
