"""On-disk tables for state that outgrows memory: a national population's person state, its routing records.

    disk = DiskStore.open(Path(data_dir), "router-persons", cache_mb=256)
    table = disk.table(3)            # partition 3, emptied: the changelog is read into it
    table["12345"] = b"..."; table.get("12345"); table.pop("12345")
    table.flush()                    # at a batch's end: its writes go to RocksDB in one write
    disk.close()                     # when the worker stops: the files are removed

Each state (bus/state.py) that keeps its tables on disk has one RocksDB (through `rocksdict`, the
RocksDB driver faust-streaming itself offers) in a directory of this process's own,
`<SAMBAND_DATA_DIR>/state/<pid>/<state>`. A partition's keys carry the partition as a two-byte
prefix, so dropping a partition is one range delete.

The files are a cache of the changelog, not a second source of truth: a partition's table is
emptied and read again from its changelog whenever it is assigned, as the in-memory tables were.
So a crash cannot leave RocksDB ahead of the changelog (a write is in RocksDB before the batch's
changelog records are acknowledged), and nothing on disk needs a write-ahead log. A worker removes
its files when it stops, and at its start those of workers on this host that are no longer running.

Memory: RocksDB's block cache (hot entries) and its write buffers share one limit per process,
`SAMBAND_STATE_CACHE_MB`; the rest stays on disk and in the operating system's page cache.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rocksdict import AccessType, BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteBufferManager, WriteOptions

FLUSH_EVERY = 10_000  # pending writes at most between flushes (a changelog read in, say)
_ABSENT = object()

Encode = Callable[[Any], bytes]
Decode = Callable[[bytes], Any]  # None for a value that no longer counts (expired)


class _Process:
    """What the process's stores share: their directory, and the memory RocksDB may use."""

    instance: _Process | None = None

    def __init__(self, root: Path, cache_mb: int):
        root.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(root.parent)
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        self.root = root
        self.cache = Cache(cache_mb * 1024 * 1024)
        # Write buffers are charged to the cache: one limit for all of RocksDB's memory.
        self.write_buffers = WriteBufferManager.new_write_buffer_manager_with_cache(
            cache_mb * 1024 * 1024 // 4, False, self.cache
        )
        self.open: set[str] = set()

    @classmethod
    def get(cls, data_dir: Path, cache_mb: int) -> _Process:
        root = data_dir.resolve() / "state" / str(os.getpid())
        if cls.instance is None or cls.instance.root != root:
            cls.instance = cls(root, cache_mb)
        return cls.instance

    def closed(self, name: str) -> None:
        self.open.discard(name)
        if not self.open:
            with contextlib.suppress(OSError):
                self.root.rmdir()


def _remove_stale(state_dir: Path) -> None:
    """The directories of workers on this host that stopped without removing theirs (a kill -9)."""
    for child in state_dir.iterdir():
        if child.name.isdigit() and int(child.name) != os.getpid() and not _running(int(child.name)):
            shutil.rmtree(child, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


class DiskStore:
    """One state's RocksDB: a table per partition. `ttl_seconds` lets RocksDB remove entries older
    than that as it compacts (a table's `decode` hides them before then)."""

    def __init__(self, path: Path, process: _Process, ttl_seconds: int | None = None):
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_manager(process.write_buffers)
        table_options = BlockBasedOptions()
        table_options.set_block_cache(process.cache)
        options.set_block_based_table_factory(table_options)
        access = AccessType.with_ttl(ttl_seconds) if ttl_seconds else AccessType.read_write()
        self.path, self.process = path, process
        self.db = Rdict(str(path), options, access_type=access)
        self.write_options = WriteOptions()
        # (a property at run time, which rocksdict's stubs call a method)
        self.write_options.disable_wal = True  # type: ignore[method-assign,assignment]  # the changelog is the log
        process.open.add(path.name)

    @classmethod
    def open(cls, data_dir: Path, name: str, cache_mb: int, ttl_seconds: int | None = None) -> DiskStore:
        process = _Process.get(data_dir, cache_mb)
        path = process.root / name
        shutil.rmtree(path, ignore_errors=True)
        return cls(path, process, ttl_seconds)

    def table(self, partition: int, encode: Encode | None = None, decode: Decode | None = None) -> DiskTable:
        """Partition `partition`'s table, emptied."""
        self.drop(partition)
        return DiskTable(self, partition, encode, decode)

    def drop(self, partition: int) -> None:
        self.db.delete_range(_prefix(partition), _prefix(partition + 1), self.write_options)

    def close(self) -> None:
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self.process.closed(self.path.name)


def _prefix(partition: int) -> bytes:
    return partition.to_bytes(2, "big")


class DiskTable:
    """One partition's key -> value table, with the interface of the dict it replaces (str keys).
    Writes wait in `pending` (read from there meanwhile) until `flush()`, at the end of a batch,
    writes them to RocksDB at once: a third of the cost of writing each."""

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
                yield full[2:].decode(), value

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
