"""The on-disk tables (bus/store.py): a dict's behaviour per partition, RocksDB underneath, files cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys

from bus.state import SegmentedState
from bus.store import FLUSH_EVERY, DiskStore


def test_a_disk_table_behaves_as_the_dict_it_replaces_and_keeps_partitions_apart(tmp_path):
    store = DiskStore.open(tmp_path, "router-persons", cache_mb=16)
    zero, one = store.table(0), store.table(1)
    zero["p1"] = b"a"
    one["p1"] = b"b"
    assert (zero.get("p1"), one.get("p1"), zero.get("p2", b"none")) == (b"a", b"b", b"none")  # before a flush
    zero.flush()
    one.flush()
    zero["p2"] = b"c"
    assert zero.pop("p1") == b"a"
    assert zero.pop("p1", "gone") == "gone"
    assert "p1" not in zero and "p2" in zero
    assert dict(zero.items()) == {"p2": b"c"} and dict(one.items()) == {"p1": b"b"}

    store.drop(1)
    assert store.table(1).get("p1") is None
    assert zero.get("p2") == b"c"
    store.close()


def test_writes_reach_rocksdb_at_a_flush_or_when_many_wait(tmp_path):
    store = DiskStore.open(tmp_path, "router-persons", cache_mb=16)
    table = store.table(0)
    table["p"] = b"x"
    assert store.db.get(b"\x00\x00p") is None  # waiting for the batch's end
    table.flush()
    assert store.db.get(b"\x00\x00p") == b"x"
    for i in range(FLUSH_EVERY):
        table[f"k{i}"] = b"v"
    assert store.db.get(b"\x00\x00k0") == b"v"  # a long recovery does not hold its writes in memory
    store.close()


def test_a_routing_record_on_disk_expires_after_its_retention(tmp_path):
    records = SegmentedState(
        "router-records", {}, DiskStore.open(tmp_path, "router-records", cache_mb=16), retention_seconds=3600
    )
    records.partitions = {0: records.disk.table(0, records.encode, records.decode)}  # type: ignore[union-attr]
    records.set(0, "event-new", ("skole",))
    records._set_at = 1_000_000  # as a segment recovered from 1970 would be
    records.set(0, "event-old", ("skole",))
    records._set_at = None
    records.take()
    assert records.get(0, "event-new") == ("skole",)
    assert records.get(0, "event-old") is None
    assert dict(records.partitions[0].items()) == {"event-new": ("skole",)}
    records.close()


def test_the_files_are_removed_at_close_and_a_dead_workers_at_the_next_start(tmp_path):
    dead = subprocess.run(  # a worker killed before it could remove its files
        [sys.executable, "-c",
         "import sys, os; from pathlib import Path; from bus.store import DiskStore; "
         "s = DiskStore.open(Path(sys.argv[1]), 'router-persons', 16); t = s.table(0); t['p'] = b'x'; t.flush(); "
         "print(os.getpid()); os._exit(0)", str(tmp_path)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert (tmp_path / "state" / dead / "router-persons").is_dir()

    store = DiskStore.open(tmp_path, "router-persons", cache_mb=16)
    assert not (tmp_path / "state" / dead).exists()
    mine = tmp_path / "state" / str(os.getpid())
    assert (mine / "router-persons").is_dir()
    store.close()
    assert not mine.exists()
