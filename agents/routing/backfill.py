"""Backfill: a subscription gets the retained events it missed, from a date (docs/backfill.md).

An operator asks for it (`samband subscriptions backfill ID --since DATE`, or the API): one record
in the compacted topic `<app id>-backfills`, keyed by subscription (a new one replaces the old, a
tombstone cancels). Every router follows that topic and, for each partition of `events` it holds,
reads the partition again from the first record written on or after the date up to its end at
the time it began, and routes each event for that subscription alone:

- under the subscription as it is now (its kommuner, types, predicates and fields), and the
  person's state now: the grade the person has today is the least the event is routed under, so
  a person who is strengt fortrolig now gets no address in any backfilled event (and the delivery
  stage applies the grade again when the delivery leaves, as for every delivery);
- each delivery carries the CloudEvents extension attribute `backfill: "true"` and the same
  idempotency key as a live delivery of the event would (`<event id>.<subscription id>`);
- the subscription joins the event's routing record, so a later correction of it reaches it too.

Live traffic first: the router takes backfill records only into batches that are less than half
full, at most `PER_BATCH` at a time. How far each partition has come is router state
(`<app id>-router-backfill`, backfill id -> start, end, next), written after the deliveries are
acknowledged, like every state write: a crash or a rebalance resumes from there, and the repeats
carry the same idempotency key.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, date, datetime

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from bus import clients
from bus.malformed import skip_malformed
from bus.reading import read_latest, read_topic, stop_quietly
from bus.topics import BACKFILLS, ensure_topics

log = structlog.get_logger(__name__)

PER_BATCH = 500  # backfill records a batch of the router may take, at most
CHUNK = 500  # records read from one partition at a time
BUFFERED = 4  # chunks read ahead, at most


@dataclass(frozen=True)
class BackfillRequest:
    id: str
    subscription: str
    since: datetime  # UTC: the backfill starts at the first event written on or after it
    requested_at: str
    requested_by: str

    @classmethod
    def new(cls, subscription: str, since: date, by: str) -> BackfillRequest:
        start = datetime(since.year, since.month, since.day, tzinfo=UTC)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        return cls(uuid.uuid4().hex, subscription, start, now, by)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "subscription": self.subscription,
                "since": self.since.isoformat(),
                "requested_at": self.requested_at,
                "requested_by": self.requested_by,
            }
        )

    @classmethod
    def from_json(cls, value: bytes) -> BackfillRequest:
        data = orjson.loads(value)
        return cls(
            data["id"], data["subscription"], datetime.fromisoformat(data["since"]), data["requested_at"],
            data["requested_by"],
        )  # fmt: skip


@dataclass(frozen=True)
class Progress:
    """One backfill in one partition of `events`: offsets [start, end), `next` to route."""

    start: int
    end: int
    next: int

    @property
    def done(self) -> bool:
        return self.next >= self.end

    def to_json(self) -> bytes:
        return orjson.dumps({"start": self.start, "end": self.end, "next": self.next})

    @classmethod
    def from_json(cls, value: bytes) -> Progress:
        data = orjson.loads(value)
        return cls(data["start"], data["end"], data["next"])


@dataclass(frozen=True)
class Chunk:
    """Records of one partition read for a backfill, from `read_from` (its progress then)."""

    request: BackfillRequest
    partition: int
    progress: Progress  # as it was when the chunk was read (new: start = next, no state yet)
    records: list[ConsumerRecord]
    read_to: int  # the offset after the last record read (end, when nothing is left)


async def ensure_requests_topic(bootstrap: str, topic: str) -> None:
    await ensure_topics(bootstrap, {topic: BACKFILLS.configs()}, BACKFILLS.partition_count())


async def write_request(bootstrap: str, topic: str, subscription: str, value: bytes | None) -> None:
    """A request (or with None, a cancellation), acknowledged by every in-sync replica."""
    await ensure_requests_topic(bootstrap, topic)
    producer = clients.durable_producer(bootstrap)
    await producer.start()
    try:
        await (await producer.send(topic, key=subscription.encode(), value=value))
    finally:
        await producer.stop()


async def read_requests(bootstrap: str, topic: str) -> dict[str, BackfillRequest]:
    """Every backfill asked for and not cancelled, by subscription."""
    found = {}
    for sub_id, value in (await read_latest(bootstrap, topic)).items():
        with skip_malformed(topic):
            found[sub_id] = BackfillRequest.from_json(value)
    return found


class Backfills:
    """The router's side of backfills: it follows the requests and reads chunks ahead for the
    partitions the router holds; the router's logic (agents/routing/stage.py) routes them."""

    def __init__(self, bootstrap: str, requests_topic: str, events_topic: str):
        self.bootstrap = bootstrap
        self.requests_topic, self.events_topic = requests_topic, events_topic
        self.requests: dict[str, BackfillRequest] = {}  # by subscription
        self.chunks: deque[Chunk] = deque()
        self.taken = asyncio.Event()  # the logic took chunks: room to read more
        self._consumer: AIOKafkaConsumer | None = None  # reads `events` by partition, in no group

    async def follow(self) -> None:
        """Keep `requests` current (a compacted topic of one partition, read from its start)."""
        await ensure_requests_topic(self.bootstrap, self.requests_topic)
        tp = TopicPartition(self.requests_topic, 0)
        consumer = clients.consumer(self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=500)
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            while True:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for record in records:
                        sub_id = record.key.decode()
                        if record.value is None:
                            self.requests.pop(sub_id, None)
                            continue
                        with skip_malformed(self.requests_topic):
                            self.requests[sub_id] = BackfillRequest.from_json(record.value)
        finally:
            await stop_quietly(consumer)

    async def read_ahead(self, held: set[int], progress_of, subscribed) -> bool:
        """Read the next chunk of each unfinished backfill in each partition in `held`, up to
        `BUFFERED` chunks in all. `progress_of(partition, backfill id)` is the router's progress
        state (None: not begun); `subscribed(id)` whether the subscription still exists.
        Returns whether a chunk was read."""
        read = False
        for request in list(self.requests.values()):
            if not subscribed(request.subscription):
                continue
            for partition in sorted(held):
                if len(self.chunks) >= BUFFERED:
                    return read
                if any(c.request.id == request.id and c.partition == partition for c in self.chunks):
                    continue  # one chunk a partition at a time: the next starts where it ends
                progress = progress_of(partition, request.id)
                if progress is not None and progress.done:
                    continue
                if self._consumer is None:
                    self._consumer = clients.consumer(self.bootstrap, enable_auto_commit=False)
                    await self._consumer.start()
                try:
                    chunk = await self._read(self._consumer, request, partition, progress)
                except Exception:
                    await self.close()  # a new one next time, on a broker that may have come back
                    raise
                self.chunks.append(chunk)
                read = True
        return read

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await stop_quietly(consumer)

    async def _read(
        self, consumer: AIOKafkaConsumer, request: BackfillRequest, partition: int, progress: Progress | None
    ) -> Chunk:
        tp = TopicPartition(self.events_topic, partition)
        consumer.assign([tp])
        if progress is None:  # begun here: from the date to the partition's end now
            end = (await consumer.end_offsets([tp]))[tp]
            found = (await consumer.offsets_for_times({tp: int(request.since.timestamp() * 1000)}))[tp]
            start = found.offset if found is not None else end
            first = (await consumer.beginning_offsets([tp]))[tp]
            progress = Progress(max(start, first), end, max(start, first))
        if progress.done:
            return Chunk(request, partition, progress, [], progress.end)
        consumer.seek(tp, progress.next)
        records: list[ConsumerRecord] = []
        while not records:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=CHUNK)
            records = [r for r in batch.get(tp, []) if r.offset < progress.end]
            if not records and await consumer.position(tp) >= progress.end:
                break
        read_to = records[-1].offset + 1 if records else progress.end
        return Chunk(request, partition, progress, records, read_to)

    def take(self, most: int) -> list[Chunk]:
        """Chunks for a batch of the router, up to about `most` records."""
        taken: list[Chunk] = []
        count = 0
        while self.chunks and (not taken or count + len(self.chunks[0].records) <= most):
            chunk = self.chunks.popleft()
            taken.append(chunk)
            count += len(chunk.records)
        if taken:
            self.taken.set()
        return taken

    def drop(self, partitions: set[int]) -> None:
        """The router gave these partitions up: what was read for them is not its to route."""
        self.chunks = deque(c for c in self.chunks if c.partition not in partitions)
        self.taken.set()


@dataclass(frozen=True)
class Summary:
    """A backfill as far as the routers have come: over the partitions of `events`."""

    request: BackfillRequest
    partitions: int  # of the events topic
    begun: int  # partitions whose router has begun it
    finished: int  # partitions whose router has routed all of its range
    routed: int  # events read again, in all
    total: int  # events in the ranges of the partitions begun

    @property
    def done(self) -> bool:
        return self.finished == self.partitions

    def as_json(self) -> dict:
        return {
            "subscription": self.request.subscription,
            "id": self.request.id,
            "since": self.request.since.date().isoformat(),
            "requested_at": self.request.requested_at,
            "partitions": self.partitions,
            "begun": self.begun,
            "finished": self.finished,
            "routed": self.routed,
            "total": self.total,
            "done": self.done,
        }

    def line(self) -> str:
        state = "done" if self.done else f"{self.finished}/{self.partitions} partitions done"
        return (
            f"{self.request.subscription:<32} since {self.request.since.date().isoformat()}  "
            f"{self.routed:>10,} of {self.total:,} events read again  {state}"
        )


async def summaries(bootstrap: str, requests_topic: str, progress_topic: str, partitions: int) -> list[Summary]:
    """Every backfill asked for, with how far it has come (the routers' progress state)."""
    requests = await read_requests(bootstrap, requests_topic)
    progress: dict[tuple[str, int], Progress] = {}
    async for record in read_topic(bootstrap, progress_topic, timeout=30.0):
        if record.value is None:
            continue
        with skip_malformed(progress_topic):
            progress[(record.key.decode(), record.partition)] = Progress.from_json(record.value)
    found = []
    for request in sorted(requests.values(), key=lambda r: r.subscription):
        mine = [p for (backfill_id, _), p in progress.items() if backfill_id == request.id]
        found.append(
            Summary(
                request,
                partitions,
                len(mine),
                sum(p.done for p in mine),
                sum(p.next - p.start for p in mine),
                sum(p.end - p.start for p in mine),
            )
        )
    return found
