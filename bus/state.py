"""Per-partition key -> value state of a batch consumer, durable in a changelog topic.

    seen = PartitionedState(names.ingest_seen_ids, INGEST_SEEN_IDS.configs(retention_ms=...))
    seen.get(partition, key) / seen.set(partition, key, value) / seen.delete(partition, key)
    pending = seen.take()                    # when the batch is handled
    seen.write(pending, writes)              # into RecordBatches, once the batch's outputs are acknowledged
    await seen.recover(bootstrap, [0, 2])    # on assignment: read the changelog partitions

The state of input partition p lives in changelog partition p (the changelog has the input
topic's partition count), so whoever is assigned p recovers exactly p's state. A write is
visible in the state at once and reaches Kafka only in `write()`: the batch service calls it
after the batch's outputs are acknowledged and commits the input offsets after it, so no
state ever claims an output ("purge sent", "id seen") that was never written.
Keys are str (UTF-8 on the wire), values bytes; a tombstone (null value) deletes.
`SegmentedState` keeps keys set once (routing records) as one changelog record per batch.

A state given a `DiskStore` (bus/store.py) keeps its tables in RocksDB instead of memory (dicts),
with the same interface: each partition's table is a `DiskTable`, emptied and read again from
the changelog on assignment, as a dict would be. `SegmentedState` is always on disk.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

import orjson
import structlog
from aiokafka import ConsumerRecord

from bus.malformed import MALFORMED, skip_malformed
from bus.reading import offset_bounds, read_topic, topic_id
from bus.record_batches import RecordBatches
from bus.store import Decode, DiskStore, DiskTable, Encode

log = structlog.get_logger(__name__)


def stored_json(value) -> bytes:
    """JSON for a value kept in a table: orjson's speed, copied to its exact size (orjson's own
    result keeps its ~4 KiB output buffer, which a table of millions of entries would hold)."""
    return memoryview(orjson.dumps(value)).tobytes()


class ChangelogState:
    """State per input partition, in memory or on disk (`disk`), recovered from its changelog
    topic. Subclasses say how a batch's writes become changelog records (`set`, `take`, `write`)
    and how a record is read back (`_apply`); on disk, `encode` and `decode` turn a value into
    bytes and back (none: the values are bytes)."""

    def __init__(
        self,
        topic: str,
        topic_configs: dict[str, str],
        disk: DiskStore | None = None,
        encode: Encode | None = None,
        decode: Decode | None = None,
    ):
        self.topic = topic
        self.topic_configs = topic_configs
        self.disk, self.encode, self.decode = disk, encode, decode
        self.partitions: dict[int, dict | DiskTable] = {}
        # Partition -> the changelog offset up to which this state reflects it: the end read to when it
        # was recovered, plus this worker's own records since, as each is acknowledged. A checkpoint
        # of a partition is taken only where the changelog ends exactly there (nobody else wrote it).
        self.reflects: dict[int, int] = {}
        self._unacknowledged = 0  # changelog records taken (the state already has them), not yet acknowledged
        self._pending: list = []  # writes since the last take(), as each subclass keeps them
        self.topic_id: str | None = None  # the changelog's, as the broker names it (on disk only)

    def get(self, partition: int, key: str):
        return self.partitions[partition].get(key)

    def drop(self, partitions: set[int]) -> None:
        """Forget the state of partitions this worker no longer owns."""
        for partition in partitions:
            self.reflects.pop(partition, None)
            if self.partitions.pop(partition, None) is not None and self.disk is not None:
                self.disk.drop(partition)

    async def recover(self, bootstrap: str, partitions: set[int]) -> None:
        """Read the changelog of `partitions` from its start to its current end; on disk, a partition
        whose files a stopped worker left with a checkpoint (bus/store.py) from the checkpoint's offset."""
        resumed = await self._resumable(bootstrap, partitions)
        for partition in partitions:
            self.partitions[partition] = (
                {}
                if self.disk is None
                else self.disk.table(partition, self.encode, self.decode, resumed=partition in resumed)
            )
        read, ends = 0, dict[int, int]()
        async for record in read_topic(
            bootstrap, self.topic, timeout=None, partitions=partitions, ends=ends, from_offsets=resumed
        ):  # fmt: skip
            read += 1
            with skip_malformed(self.topic):
                self._apply(self.partitions[record.partition], record)
        self.flush()
        self.reflects.update({p: end for p, end in ends.items() if p in partitions})
        if self.disk is not None:
            self.disk.forget_unresumed()
        if resumed:
            log.info("state.resumed", topic=self.topic, partitions=sorted(resumed), read_whole=sorted(partitions - resumed.keys()),
                     records_read=read)  # fmt: skip

    async def _resumable(self, bootstrap: str, partitions: set[int]) -> dict[int, int]:
        """Partition -> the offset to read its changelog on from, for those the files hold up to
        a checkpoint that fits the topic (an offset past its end: not this topic's files)."""
        if self.disk is None or not self.disk.resumable:
            return {}
        self.topic_id = self.topic_id or await topic_id(bootstrap, self.topic)
        if self.topic_id is None:
            return {}
        offsets = {p: offset for p in partitions if (offset := self.disk.resume(p, self.topic_id)) is not None}
        if not offsets:
            return {}
        bounds = await offset_bounds(bootstrap, self.topic, offsets)
        return {p: max(offset, bounds[p][0]) for p, offset in offsets.items() if offset <= bounds[p][1]}

    def flush(self) -> None:
        """Write what waits for RocksDB (nothing in memory): at a batch's end, and after a recovery."""
        if self.disk is not None:
            for table in self.partitions.values():
                table.flush()  # type: ignore[union-attr]

    def checkpoint(self, ends: dict[int, int]) -> dict[int, int]:
        """Of `ends` (partition -> the changelog's end offset now), those this state reflects exactly:
        none while a record it took is unacknowledged or a write waits (a failed cycle: the files may
        be ahead of the changelog), and none of a partition someone else wrote since."""
        if self._unacknowledged or self._pending:
            return {}
        return {p: end for p, end in ends.items() if self.reflects.get(p) == end}

    def close(self, ends: dict[int, int] | None = None) -> None:
        """The worker stops: an on-disk state's files are removed, or kept with a checkpoint of the
        partitions of `ends` it reflects exactly (`checkpoint`)."""
        if self.disk is not None:
            offsets = self.checkpoint(ends or {})
            self.partitions = {}
            self.disk.close(offsets, self.topic_id)

    async def learn_topic_id(self, bootstrap: str) -> None:
        """The changelog topic's id, for a checkpoint (asked once; None if the broker does not say)."""
        if self.disk is not None and self.topic_id is None:
            self.topic_id = await topic_id(bootstrap, self.topic)

    def abandoned(self) -> None:
        """The cycles in flight were given up (an outage): what they took is read again from the
        changelog with every partition, and is no longer waited for."""
        self._unacknowledged = 0

    def acknowledged(self, pending: list) -> None:
        """The changelog records of `pending` (from `take()`, partition first in each) are acknowledged."""
        self._unacknowledged -= len(pending)
        for item in pending:
            if item[0] in self.reflects:
                self.reflects[item[0]] += 1

    def take(self) -> list:
        """The writes since the last `take()`, for `write()` once the outputs they imply are acknowledged."""
        raise NotImplementedError

    def write(self, pending: list, writes: RecordBatches) -> None:
        """Add the changelog records of `pending` (from `take()`) to `writes`."""
        raise NotImplementedError

    def _apply(self, data: dict | DiskTable, record: ConsumerRecord) -> None:
        """Take in one changelog record; raises (bus/malformed.py) before changing `data` if it is malformed."""
        raise NotImplementedError


class PartitionedState(ChangelogState):
    """Key -> bytes, a changelog record per write (the newest per key kept by compaction).
    `check` reads a value back at recovery and raises if it is malformed: the record is then skipped
    and counted, or, with `fail_closed`, its key takes that value instead: for state whose loss
    would be unsafe (a person's protection grade read as "none"), the safe value. `expired` says of
    a value read back that it no longer counts: its key is then not recovered (the broker deletes
    a time-retained topic's records only a closed segment at a time)."""

    def __init__(
        self,
        topic: str,
        topic_configs: dict[str, str],
        check: Callable[[bytes], object] | None = None,
        fail_closed: bytes | None = None,
        disk: DiskStore | None = None,
        expired: Callable[[bytes], bool] | None = None,
    ):
        super().__init__(topic, topic_configs, disk)
        self.check = check
        self.fail_closed = fail_closed
        self.expired = expired
        self._pending: list[tuple[int, str, bytes | None]] = []

    def set(self, partition: int, key: str, value: bytes) -> None:
        self.partitions[partition][key] = value
        self._pending.append((partition, key, value))

    def delete(self, partition: int, key: str) -> None:
        self.partitions[partition].pop(key, None)
        self._pending.append((partition, key, None))

    def take(self) -> list[tuple[int, str, bytes | None]]:
        """The writes since the last `take()`, for `write()` once the outputs they imply are acknowledged."""
        self.flush()
        pending, self._pending = self._pending, []
        self._unacknowledged += len(pending)
        return pending

    def write(self, pending: list[tuple[int, str, bytes | None]], writes: RecordBatches) -> None:
        for partition, key, value in pending:
            writes.add(self.topic, key.encode(), value, None, partition)

    def _apply(self, data: dict | DiskTable, record: ConsumerRecord) -> None:
        key = record.key.decode()
        if record.value is None:
            data.pop(key, None)
        else:
            if self.check is not None:
                try:
                    self.check(record.value)
                except MALFORMED:
                    if self.fail_closed is not None:
                        data[key] = self.fail_closed
                    raise  # counted and logged as malformed either way
            if self.expired is not None and self.expired(record.value):
                data.pop(key, None)
            else:
                data[key] = record.value


class SegmentedState(ChangelogState):
    """Per-partition key -> tuple of strings, on disk, for keys never deleted (the router's routing
    records, by event id), durable as segments: one changelog record per partition and batch,
    keyed by the segment's first key and a random suffix, whose value is the JSON object
    {key: [..], ...} of the keys set in the batch. Each segment has a key of its own: were two
    keyed alike (a key set again later, as a backfill adds its subscription to an event's record,
    first in its segment), compaction would keep the later and drop the other keys of the
    earlier. A record per key cost ~2 us per event in the router (records to build, send and
    store; docs/routing.md, Performance); a segment costs one JSON write per batch.
    A segment is closed at ~SEGMENT_BYTES, well under the broker's 1 MB record limit, whatever
    the batch size and fan-out.

    A batch handled again after a crash writes its keys again, in a later segment: recovery
    reads the segments in order, so the latest value wins, as a compacted topic's would.

    With `retention_seconds`, a key expires that long after it was set (when recovered: after its
    segment's timestamp): it is no longer found. Its changelog topic should have that retention
    (agents/routing/stage.py gives it), so the broker deletes the old segments too.
    """

    SEGMENT_BYTES = 128 * 1024  # in characters; even escaped (<= 6 bytes each) under the broker's 1 MB

    def __init__(
        self, topic: str, topic_configs: dict[str, str], disk: DiskStore, retention_seconds: float | None = None
    ):
        super().__init__(topic, topic_configs, disk, self._encode, self._decode)
        self.retention_seconds = retention_seconds
        self._pending: list[_Segment] = []
        self._open: dict[int, _Segment] = {}  # partition -> its segment being filled

    # A table's value is (set at, in epoch seconds; the subscriptions), stored as [set at, subscription, ...].
    @staticmethod
    def _encode(entry: tuple[float, Sequence[str]]) -> bytes:
        return orjson.dumps([int(entry[0]), *entry[1]])

    def _decode(self, raw: bytes) -> tuple[str, ...] | None:
        set_at, *value = orjson.loads(raw)
        if self.retention_seconds is not None and set_at < time.time() - self.retention_seconds:
            return None
        return tuple(value)

    def set(self, partition: int, key: str, value: tuple[str, ...]) -> None:
        self.partitions[partition][key] = (time.time(), value)
        size = len(key) + 6 + 3 * len(value) + sum(map(len, value))  # its JSON, in characters
        segment = self._open.get(partition)
        if segment is None or segment.size + size > self.SEGMENT_BYTES:
            segment = self._open[partition] = _Segment(partition)
            self._pending.append(segment)
        segment.entries[key] = value
        segment.size += size

    def take(self) -> list[tuple[int, dict[str, tuple[str, ...]]]]:
        self.flush()
        pending, self._pending, self._open = self._pending, [], {}
        self._unacknowledged += len(pending)
        return [(segment.partition, segment.entries) for segment in pending]

    def write(self, pending: list[tuple[int, dict[str, tuple[str, ...]]]], writes: RecordBatches) -> None:
        for partition, segment in pending:
            key = f"{next(iter(segment))}~{os.urandom(6).hex()}"
            writes.add(self.topic, key.encode(), orjson.dumps(segment), None, partition)

    def _apply(self, data: dict | DiskTable, record: ConsumerRecord) -> None:
        if record.value is None:
            return
        segment = orjson.loads(record.value)
        if not all(isinstance(values, list) and all(isinstance(v, str) for v in values) for values in segment.values()):
            raise TypeError("not a segment of routing records")
        set_at = record.timestamp / 1000
        for key, values in segment.items():
            data[key] = (set_at, values)


class _Segment:
    __slots__ = ("entries", "partition", "size")

    def __init__(self, partition: int):
        self.partition = partition
        self.entries: dict[str, tuple[str, ...]] = {}
        self.size = 0
