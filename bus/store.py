"""On-disk tables for state that outgrows memory: a national population's person state, its routing records.

    disk = DiskStore.open(Path(data_dir), "router-persons", cache_mb=256)
    table = disk.table(3)            # partition 3's table, emptied: the changelog is read into it
    table["12345"] = b"..."; table.get("12345"); table.pop("12345"); table.items()
    table.flush()                    # at a batch's end: its writes go to RocksDB in one write
    disk.drop(3)                     # the partition is given up
    disk.close()                     # the worker stops: the files are removed
    disk.close({3: 1200}, topic_id)  # ... or kept, reflecting partition 3's changelog up to offset 1200

    disk = DiskStore.open(Path(data_dir), "router-persons", cache_mb=256, checkpoint_hours=12)
    disk.resume(3, topic_id)         # 1200: a stopped worker's files taken over; read on from there
    disk.table(3, resumed=True)      # partition 3's table as the files hold it

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
needs a write-ahead log. The one exception is a *checkpoint*: a worker that stops cleanly may
close a store with the changelog offsets its files reflect exactly and the changelog topic's id
(`close(offsets, topic_id)`; bus/state.py decides which partitions qualify). Its directory is
then kept, with a `<state>.checkpoint` file per store, and the next worker to start on the data
directory within `checkpoint_hours` takes it over, with the stopped worker's id (bus/assignor.py:
so it is given the same partitions again): a partition named in the checkpoint is read from its
offset on instead of from the start (`resume`), if the topic id is the same. The checkpoint
files are deleted as the directory is taken over, before anything is written, so files that a
crash may have put ahead of the changelog are never resumed. Reading from an offset lower than
the files reflect is harmless (each key ends at its latest value); a higher one would miss
changes. A partition not named in it is emptied when the files are taken over; a table is read
whole again at least every FULL_READ_EVERY, so what expired in between (routing records, seen
ids, found expired when read) leaves the files too.

A worker holds a lock on its directory (`flock` on `lock` inside) while it runs and removes it
when it stops (unless it keeps it with a checkpoint); at its start it removes every directory
whose lock nobody holds and that has no checkpoint young enough (a worker killed with kill -9).
So a data directory may be shared by several workers on one host, but it must be on a local
disk: `flock` does not hold across NFS.

Memory: RocksDB's block cache (hot entries, and the index and Bloom filter blocks) and its write
buffers share one limit per process, `SAMBAND_STATE_CACHE_MB` (the first store opened sets it);
the rest stays on disk and in the operating system's page cache. Beside that limit: up to
FLUSH_EVERY writes per table waiting for their batch's end.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, ClassVar

import orjson
import structlog
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteBufferManager, WriteOptions

from bus.assignor import take_worker_id, worker_id

log = structlog.get_logger(__name__)

FLUSH_EVERY = 10_000  # pending writes at most between flushes (a changelog read in, say)
PREFIX_BYTES = 4  # a key's partition, big-endian
CHECKPOINT = ".checkpoint"  # a store's checkpoint file is <state>.checkpoint in the directory
FULL_READ_EVERY = 7 * 86_400  # seconds a partition's table may be resumed before it is read whole again
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
    """This process's directory under `<data_dir>/state`, locked while it has a store open: one a
    stopped worker kept with checkpoints younger than `checkpoint_hours`, taken over, or a new one."""

    by_data_dir: ClassVar[dict[Path, _Directory]] = {}

    def __init__(self, state_dir: Path, checkpoint_hours: float):
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.checkpoints: dict[str, dict] = {}  # store -> its checkpoint, as written (DiskStore.close)
        self.open: set[str] = set()
        self.checkpointed: set[str] = set()  # stores closed with a checkpoint
        self.path: Path | None = None
        for child, lock in _locked_stopped(state_dir):
            found = _young_checkpoints(child, checkpoint_hours)
            if found and self.path is None:
                self._take_over(child, lock, found)
                continue
            if not found:  # a killed worker's, or too old: removed
                shutil.rmtree(child, ignore_errors=True)
            lock.close()  # (one with a young checkpoint, this process having one already: another's to take)
        if self.path is None:
            name = uuid.uuid4().hex
            # Locked under a name the clean-up skips, then renamed: no other worker ever sees it unlocked.
            making = state_dir / f".{name}"
            making.mkdir(mode=0o700)  # the files hold personal data: this worker's user alone
            self._lock: IO = (making / "lock").open("w")
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.path = making.rename(state_dir / name)

    def _take_over(self, child: Path, lock: IO, found: dict[str, dict]) -> None:
        """Go on with `child` (locked by `lock`) as the stopped worker that left it: its checkpoints
        (`found`) taken and their files deleted at once, its worker id taken (bus/assignor.py)."""
        self.checkpoints.update(found)
        same_id = take_worker_id(next(iter(found.values()))["worker"].encode())
        for stale in child.iterdir():  # checkpoint files, and stores without a checkpoint
            if stale.name != "lock" and stale.name not in self.checkpoints:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        _sync(child)  # the checkpoints gone before anything is written: a crash from now on resumes nothing
        self._lock, self.path = lock, child
        log.info("state.taken_over", directory=child.name, states=sorted(found), same_worker_id=same_id)

    @classmethod
    def of(cls, data_dir: Path, checkpoint_hours: float) -> _Directory:
        key = data_dir.resolve()
        if key not in cls.by_data_dir:
            cls.by_data_dir[key] = cls(key / "state", checkpoint_hours)
        return cls.by_data_dir[key]

    def closed(self, name: str, checkpointed: bool) -> None:
        assert self.path is not None
        self.open.discard(name)
        if checkpointed:
            self.checkpointed.add(name)
        if not self.open:
            if self.checkpointed:
                _sync(self.path)
            else:
                shutil.rmtree(self.path, ignore_errors=True)
            self._lock.close()
            self.by_data_dir.pop(self.path.parent.parent, None)


def _young_checkpoints(child: Path, checkpoint_hours: float) -> dict[str, dict]:
    """Store name -> its checkpoint, of those in `child` written less than `checkpoint_hours` ago
    (the time written inside, not the file's: a copied directory keeps it) and readable."""
    found = {}
    for file in child.glob(f"*{CHECKPOINT}"):
        name = file.name.removesuffix(CHECKPOINT)
        try:
            checkpoint = orjson.loads(file.read_bytes())
            age = time.time() - float(checkpoint["written_at"])
            checkpoint["worker"].encode(), dict(checkpoint["partitions"])  # (their shape, checked)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            log.warning("state.checkpoint_unreadable", directory=child.name, state=name)
            continue
        if age < checkpoint_hours * 3600:
            found[name] = checkpoint
        else:
            log.info("state.checkpoint_too_old", directory=child.name, state=name, hours=round(age / 3600, 1))
    return found


def _locked_stopped(state_dir: Path) -> Iterator[tuple[Path, IO]]:
    """The directories of workers that have stopped (nobody held their lock): those that stopped
    cleanly and kept their files, and those that were killed (kill -9). Each comes locked, by the
    open file given with it, so no other worker takes or removes it meanwhile."""
    for child in sorted(state_dir.iterdir()):
        if child.name.startswith("."):
            continue  # being made (a worker killed in that instant leaves an empty one)
        try:
            lock = (child / "lock").open("a")
        except OSError:  # removed meanwhile by another worker
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: a running worker's
            lock.close()
            continue
        yield child, lock


def _sync(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DiskStore:
    """One state's RocksDB: a table per partition."""

    def __init__(self, path: Path, directory: _Directory, memory: _Memory, checkpoint_hours: float):
        # A table may be resumed only as its checkpoint says: any other files of this state are stale.
        self.checkpoint_hours = checkpoint_hours
        now = time.time()
        checkpoint = directory.checkpoints.pop(path.name, {})
        self.checkpoint_topic_id: str | None = checkpoint.get("topic_id")
        self.checkpoint_written_at = float(checkpoint.get("written_at", 0))
        self.resumable = {
            int(p): (int(offset), float(read_at))
            for p, (offset, read_at) in checkpoint.get("partitions", {}).items()
            if now - float(read_at) < FULL_READ_EVERY
        }
        self.read_whole_at: dict[int, float] = {}  # partition -> when its table was last read whole
        if not self.resumable:
            shutil.rmtree(path, ignore_errors=True)
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
        if self.resumable:
            self._drop_all_but(set(self.resumable))

    @classmethod
    def open(cls, data_dir: Path, name: str, cache_mb: int, checkpoint_hours: float = 0.0) -> DiskStore:
        """`checkpoint_hours`: how old a stopped worker's checkpoint may be to be taken over (0: none is)."""
        directory = _Directory.of(data_dir, checkpoint_hours)
        if name in directory.open:
            raise ValueError(f"the state {name} is open already in this process")
        assert directory.path is not None
        store = cls(directory.path / name, directory, _Memory.of_process(cache_mb), checkpoint_hours)
        directory.open.add(name)
        return store

    def _drop_all_but(self, partitions: set[int]) -> None:
        """Empty every partition's table but those of `partitions` (each range between two of them)."""
        after = -1  # the last partition kept so far
        for kept in [*sorted(partitions), 2 ** (8 * PREFIX_BYTES) - 1]:
            if kept > after + 1:
                self.db.delete_range(_prefix(after + 1), _prefix(kept), self.write_options)
            after = kept

    def resume(self, partition: int, topic_id: str) -> int | None:
        """The changelog offset from which `partition`'s table, as the files hold it, is to be read
        on: a checkpoint's, once, if it is of the changelog topic `topic_id` (the broker's id: not a
        topic deleted and made again, nor one of another cluster) and still young enough (None: it
        is to be read whole)."""
        found = self.resumable.pop(partition, None)
        if found is None:
            return None
        if (
            topic_id != self.checkpoint_topic_id
            or time.time() - self.checkpoint_written_at >= self.checkpoint_hours * 3600
        ):
            log.info("state.checkpoint_not_resumed", state=self.path.name, partition=partition,
                     reason="another topic" if topic_id != self.checkpoint_topic_id else "too old")  # fmt: skip
            self.drop(partition)
            return None
        offset, self.read_whole_at[partition] = found
        return offset

    def table(
        self, partition: int, encode: Encode | None = None, decode: Decode | None = None, resumed: bool = False
    ) -> DiskTable:
        """Partition `partition`'s table, emptied (to be read whole), or as the files hold it
        (`resumed`: from a checkpoint, `resume(partition)` having given the offset to read on from)."""
        if not resumed:
            self.drop(partition)
            self.read_whole_at[partition] = time.time()
        return DiskTable(self, partition, encode, decode)

    def forget_unresumed(self) -> None:
        """The partitions of the checkpoint not resumed (assigned elsewhere now) are emptied."""
        for partition in list(self.resumable):
            del self.resumable[partition]
            self.drop(partition)

    def drop(self, partition: int) -> None:
        self.db.delete_range(_prefix(partition), _prefix(partition + 1), self.write_options)
        self.read_whole_at.pop(partition, None)

    def close(self, offsets: dict[int, int] | None = None, topic_id: str | None = None) -> None:
        """The worker stops: the files are removed or, with `offsets` (partition -> the changelog
        offset up to which the files reflect it, every write of the worker acknowledged) and
        `checkpoint_hours`, kept for the next worker with a checkpoint of those partitions."""
        self.forget_unresumed()
        partitions = {
            str(p): [offset, self.read_whole_at[p]] for p, offset in (offsets or {}).items() if p in self.read_whole_at
        }
        checkpointed = bool(partitions) and topic_id is not None and self.checkpoint_hours > 0
        if checkpointed:
            self.db.flush()  # (the writes skip the write-ahead log: in the files before the checkpoint)
        self.db.close()
        if checkpointed:
            file = self.path.parent / f"{self.path.name}{CHECKPOINT}"
            writing = self.path.parent / f"{self.path.name}.writing"
            checkpoint = {
                "partitions": partitions, "written_at": time.time(), "worker": worker_id().decode(), "topic_id": topic_id,
            }  # fmt: skip
            with writing.open("wb") as out:
                out.write(orjson.dumps(checkpoint))
                out.flush()
                os.fsync(out.fileno())
            os.replace(writing, file)
        else:
            shutil.rmtree(self.path, ignore_errors=True)
        self.directory.closed(self.path.name, checkpointed=checkpointed)


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
