"""On-disk tables for state that outgrows memory: a national population's person state, its routing records.

    disk = DiskStore.open(Path(data_dir), "router-persons", cache_mb=256)
    table = disk.table(3)            # partition 3's table, emptied: the changelog is read into it
    table["12345"] = b"..."; table.get("12345"); table.pop("12345"); table.items()
    table.flush()                    # at a batch's end: its writes go to RocksDB in one write
    disk.drop(3)                     # the partition is given up
    disk.close()                     # the worker stops: the files are removed

Each state (bus/state.py) kept on disk has one RocksDB (through `rocksdict`, the RocksDB driver
faust-streaming itself offers) in a directory of this process's own,
`<SAMBAND_DATA_DIR>/state/<random name>/<state>`. A partition's keys carry the partition as a
four-byte prefix, so dropping a partition is one range delete. `encode` and `decode`, given per
table, turn a value into bytes and back (none: the values are bytes); `decode` may return None
for a value that no longer counts (an expired routing record): the table then has no such key.

The files are a cache of the changelog, not a second source of truth. A partition's table is
emptied and read again from its changelog whenever it is assigned, as the in-memory tables were,
so what a crashed worker had written to RocksDB (it may be ahead of the changelog: RocksDB is
written before the batch's changelog records are acknowledged) is never read again, and nothing
needs a write-ahead log. A worker removes its directory when it stops. It holds a lock on it
(`flock` on `lock` inside) while it runs; at its start it removes every directory whose lock
nobody holds (a worker killed with kill -9). So a data directory may be shared by several
workers on one host, but it must be on a local disk: `flock` does not hold across NFS.

Memory: RocksDB's block cache (hot entries, and the index and Bloom filter blocks) and its write
buffers share one limit per process, `SAMBAND_STATE_CACHE_MB` (the first store opened sets it);
the rest stays on disk and in the operating system's page cache. Beside that limit: up to
FLUSH_EVERY writes per table waiting for their batch's end.
"""

from __future__ import annotations

import fcntl
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteBufferManager, WriteOptions

FLUSH_EVERY = 10_000  # pending writes at most between flushes (a changelog read in, say)
PREFIX_BYTES = 4  # a key's partition, big-endian
_ABSENT = object()

Encode = Callable[[Any], bytes]
Decode = Callable[[bytes], Any]


class _Memory:
    """What every store of the process shares: one cache, its write buffers charged to it."""

    instance: ClassVar[_Memory | None] = None

    def __init__(self, cache_mb: int):
        self.cache = Cache(cache_mb * 1024 * 1024)
        self.write_buffers = WriteBufferManager.new_write_buffer_manager_with_cache(
            cache_mb * 1024 * 1024 // 4, False, self.cache
        )

    @classmethod
    def of_process(cls, cache_mb: int) -> _Memory:
        if cls.instance is None:
            cls.instance = cls(cache_mb)
        return cls.instance


class _Directory:
    """This process's directory under `<data_dir>/state`, locked while it has a store open."""

    by_data_dir: ClassVar[dict[Path, _Directory]] = {}

    def __init__(self, state_dir: Path):
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _remove_unlocked(state_dir)
        name = uuid.uuid4().hex
        # Locked under a name the clean-up skips, then renamed: no other worker ever sees it unlocked.
        making = state_dir / f".{name}"
        making.mkdir(mode=0o700)  # the files hold personal data: this worker's user alone
        self._lock = (making / "lock").open("w")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = making.rename(state_dir / name)
        self.open: set[str] = set()

    @classmethod
    def of(cls, data_dir: Path) -> _Directory:
        key = data_dir.resolve()
        if key not in cls.by_data_dir:
            cls.by_data_dir[key] = cls(key / "state")
        return cls.by_data_dir[key]

    def closed(self, name: str) -> None:
        self.open.discard(name)
        if not self.open:
            shutil.rmtree(self.path, ignore_errors=True)
            self._lock.close()
            self.by_data_dir.pop(self.path.parent.parent, None)


def _remove_unlocked(state_dir: Path) -> None:
    """The directories of workers that stopped without removing theirs (a kill -9): nobody holds their lock."""
    for child in state_dir.iterdir():
        if child.name.startswith("."):
            continue  # being made (a worker killed in that instant leaves an empty one)
        try:
            with (child / "lock").open() as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: a running worker's
            continue
        shutil.rmtree(child, ignore_errors=True)


class DiskStore:
    """One state's RocksDB: a table per partition."""

    def __init__(self, path: Path, directory: _Directory, memory: _Memory):
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_manager(memory.write_buffers)
        table_options = BlockBasedOptions()
        table_options.set_block_cache(memory.cache)
        table_options.set_bloom_filter(10, False)  # a read skips the files that do not hold its key
        table_options.set_cache_index_and_filter_blocks(True)  # within the memory limit
        table_options.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table_options)
        self.path, self.directory = path, directory
        self.db = Rdict(str(path), options)
        self.write_options = WriteOptions()
        # (a property at run time, which rocksdict's stubs call a method)
        self.write_options.disable_wal = True  # type: ignore[method-assign,assignment]  # the changelog is the log

    @classmethod
    def open(cls, data_dir: Path, name: str, cache_mb: int) -> DiskStore:
        directory = _Directory.of(data_dir)
        if name in directory.open:
            raise ValueError(f"the state {name} is open already in this process")
        store = cls(directory.path / name, directory, _Memory.of_process(cache_mb))
        directory.open.add(name)
        return store

    def table(self, partition: int, encode: Encode | None = None, decode: Decode | None = None) -> DiskTable:
        """Partition `partition`'s table, emptied."""
        self.drop(partition)
        return DiskTable(self, partition, encode, decode)

    def drop(self, partition: int) -> None:
        self.db.delete_range(_prefix(partition), _prefix(partition + 1), self.write_options)

    def close(self) -> None:
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self.directory.closed(self.path.name)


def _prefix(partition: int) -> bytes:
    return partition.to_bytes(PREFIX_BYTES, "big")


class DiskTable:
    """One partition's key -> value table, with the methods of the dict it replaces that the
    states use (`get`, `in`, `[key] = value`, `pop`, `items`); keys are str. Writes wait in
    `pending` (read from there meanwhile) until `flush()`, at the end of a batch, writes them to
    RocksDB at once, or until FLUSH_EVERY of them wait."""

    __slots__ = ("_db", "_decode", "_encode", "_options", "_pending", "_prefix")

    def __init__(self, store: DiskStore, partition: int, encode: Encode | None, decode: Decode | None):
        self._db, self._options = store.db, store.write_options
        self._prefix = _prefix(partition)
        self._encode, self._decode = encode, decode
        self._pending: dict[bytes, bytes | None] = {}  # None: deleted

    def get(self, key: str, default: Any = None) -> Any:
        raw: Any = self._pending.get(full := self._prefix + key.encode(), _ABSENT)
        if raw is _ABSENT:
            raw = self._db.get(full)
        if raw is None:
            return default
        if self._decode is None:
            return raw
        value = self._decode(raw)
        return default if value is None else value

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def __setitem__(self, key: str, value: Any) -> None:
        self._pending[self._prefix + key.encode()] = value if self._encode is None else self._encode(value)
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def pop(self, key: str, default: Any = None) -> Any:
        value = self.get(key, _ABSENT)
        if value is _ABSENT:
            return default
        self._pending[self._prefix + key.encode()] = None
        return value

    def items(self) -> Iterator[tuple[str, Any]]:
        self.flush()
        prefix, decode = self._prefix, self._decode
        full: Any
        for full, raw in self._db.items(from_key=prefix):
            if not full.startswith(prefix):
                return
            value = raw if decode is None else decode(raw)
            if value is not None:
                yield full[len(prefix) :].decode(), value

    def flush(self) -> None:
        if self._pending:
            batch = WriteBatch(raw_mode=True)
            for key, value in self._pending.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            self._db.write(batch, self._options)
            self._pending.clear()
