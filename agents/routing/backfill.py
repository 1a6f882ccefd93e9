"""Backfill: a subscription gets the retained events it missed, from a date (docs/backfill.md).

An operator asks for it (`samband subscriptions backfill ID --since DATE`, or the API): one record
in the compacted topic `<app id>-backfills`, keyed by subscription (a new one replaces the old, a
tombstone cancels). Every router follows that topic and, for each partition of `events` assigned
to it, reads the partition again from the first record written on or after the date up to the
offset the live router (its routing of new events to every subscription) had come to when the
backfill began there, then in further passes on to where it had come by the end of the pass
before, until a pass sends nothing (`Progress`), and routes each event for that subscription
alone:

- under the subscription as it is now (its kommuner, types, predicates and fields), and the
  person's state now: the grade the person has today is the least the event is routed under, so
  a person who is strengt fortrolig now gets no address in any backfilled event (and the delivery
  stage applies the grade again when the delivery leaves, as for every delivery);
- each delivery carries the CloudEvents extension attribute `backfill: "true"` and the same
  idempotency key as a live delivery of the event would (`<event id>.<subscription id>`);
- the subscription joins the event's routing record, so a later correction of it reaches it too.

Live traffic first: the router takes backfill records only into batches at most half full of
live ones, at most `PER_BATCH` at a time. How far each partition has come is router state
(`<app id>-router-backfill`, `progress:<backfill id>` -> `Progress`), written after the
deliveries are acknowledged, like every state write: a crash or a rebalance resumes from there,
and the repeats carry the same idempotency key.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, date, datetime

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from agents.subscriptions.model import Subscription
from bus import clients
from bus.malformed import skip_malformed
from bus.reading import partition_count, read_latest, read_topic, stop_quietly
from bus.topics import BACKFILLS, TopicNames, ensure_topics

log = structlog.get_logger(__name__)

PER_BATCH = 500  # backfill records a batch of the router may take, at most
CHUNK = 500  # records read from one partition at a time
BUFFERED = 4  # chunks read ahead, at most


def fingerprint(subscription: Subscription) -> str:
    """The subscription as it was when the backfill was asked for: a backfill runs only while the
    subscription is unchanged (a change of scope, or a delete, stops it; ask again)."""
    return hashlib.sha256(subscription.to_json()).hexdigest()[:32]


@dataclass(frozen=True)
class BackfillRequest:
    id: str
    subscription: str
    since: date  # the backfill starts at the first event written on or after its midnight (UTC)
    requested_at: str
    requested_by: str
    fingerprint: str  # of the subscription when it was asked for

    @classmethod
    def new(cls, subscription: Subscription, since: date, by: str) -> BackfillRequest:
        """Raises ValueError, in the operator's words, for a day in the future."""
        if since > datetime.now(UTC).date():
            raise ValueError(f"since {since.isoformat()} is in the future: there is nothing to send yet")
        now = datetime.now(UTC).isoformat(timespec="seconds")
        return cls(uuid.uuid4().hex, subscription.id, since, now, by, fingerprint(subscription))

    @property
    def since_ms(self) -> int:
        return int(datetime(self.since.year, self.since.month, self.since.day, tzinfo=UTC).timestamp() * 1000)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "subscription": self.subscription,
                "since": self.since.isoformat(),
                "requested_at": self.requested_at,
                "requested_by": self.requested_by,
                "fingerprint": self.fingerprint,
            }
        )

    @classmethod
    def from_json(cls, value: bytes) -> BackfillRequest:
        data = orjson.loads(value)
        return cls(
            data["id"], data["subscription"], date.fromisoformat(data["since"]), data["requested_at"],
            data["requested_by"], data["fingerprint"],
        )  # fmt: skip


@dataclass(frozen=True)
class Progress:
    """One backfill in one partition of `events`: offsets [start, end), `next` to route, in passes.

    The first pass ends where the live router was when the backfill began in the partition: from
    there the live router routed every event with the subscription among its own (a backfill
    begins only for a subscription the router knows). Each further pass goes on to where the live
    router was when the pass before ended, for what the subscription did not get: a correction
    the live router routed meanwhile, of an event this backfill had not sent yet, went to that
    event's recipients without the subscription (and so may a correction of that correction,
    found by the pass after); a router that took the partition over may have routed a few events
    before it knew the subscription. A pass after the first that sends nothing ends it: from then
    on every correction reaches the subscription through the routing records the backfill joined."""

    start: int
    end: int
    next: int
    passes: int = 1  # the pass under way
    sent: bool = False  # whether this pass has sent the subscription anything yet

    @property
    def done(self) -> bool:
        return self.next >= self.end and self.passes > 1 and not self.sent

    def moved_to(self, next_offset: int, live_next: int, sent: bool) -> Progress:
        """Routed up to `next_offset`, sending the subscription something on the way or not, with
        the live router at `live_next`: the next pass begins when this one has come to its end."""
        sent = self.sent or sent
        if next_offset < self.end or (self.passes > 1 and not sent):
            return Progress(self.start, self.end, next_offset, self.passes, sent)
        return Progress(self.start, max(self.end, live_next), next_offset, self.passes + 1)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"start": self.start, "end": self.end, "next": self.next, "passes": self.passes, "sent": self.sent}
        )

    @classmethod
    def from_json(cls, value: bytes) -> Progress:
        data = orjson.loads(value)
        # (Written before the passes: one more pass, which sends only what was missed.)
        return cls(data["start"], data["end"], data["next"], data.get("passes", 1), data.get("sent", False))


@dataclass(frozen=True)
class Chunk:
    """Records of one partition read for a backfill, from its progress then up to its end or the
    live router's position then, whichever is first: never an event the live router has not
    handled."""

    request: BackfillRequest
    partition: int
    progress: Progress  # as it was when the chunk was read (new: start = next, no state yet)
    records: list[ConsumerRecord]
    read_to: int  # the offset after the last record read (`limit`, when nothing is left below it)


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
        # Reads `events` in no group, assigned the partitions some backfill has left to read: each
        # keeps its position and what was fetched beyond a chunk for the next (at most one fetch,
        # 1 MiB, a partition).
        self._consumer: AIOKafkaConsumer | None = None
        self._reading: frozenset[int] = frozenset()  # the partitions it is assigned
        self._fetched_to: dict[int, int] = {}  # partition -> the offset it reads next there

    async def follow(self) -> None:
        """Keep `requests` current (a compacted topic of one partition, read from its start)."""
        await ensure_requests_topic(self.bootstrap, self.requests_topic)
        tp = TopicPartition(self.requests_topic, 0)
        consumer = clients.consumer(self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=500)
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            found: dict[str, BackfillRequest] = {}  # read anew: a cancel compacted away meanwhile stays one
            self.requests = found
            while True:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for record in records:
                        if record.key is None:
                            continue  # not written by the bus
                        sub_id = record.key.decode(errors="replace")
                        if record.value is None:
                            found.pop(sub_id, None)
                            continue
                        with skip_malformed(self.requests_topic):
                            found[sub_id] = BackfillRequest.from_json(record.value)
        finally:
            await stop_quietly(consumer)

    async def read_ahead(self, held: set[int], progress_of, live_position, current) -> bool:
        """Read the next chunk of each unfinished backfill in each partition in `held` (assigned to
        this router), up to `BUFFERED` chunks in all. `progress_of(partition, backfill id)` is the
        router's progress state (None: not begun); `live_position(partition)` the next offset the
        live router will handle there (None: not known yet); `current(request)` whether its
        subscription is as it was when asked for. Returns whether a chunk was read. With nothing
        left to read, the reading consumer is closed (its fetches held in memory go with it)."""
        work = [
            (request, partition, progress)
            for request in list(self.requests.values())
            if current(request)
            for partition in sorted(held)
            if (progress := progress_of(partition, request.id)) is None or not progress.done
        ]
        if not work:
            await self.close()
            return False
        reading = {partition for _, partition, _ in work}
        read = False
        for request, partition, progress in work:
            if len(self.chunks) >= BUFFERED:
                break
            if any(c.request.id == request.id and c.partition == partition for c in self.chunks):
                continue  # one chunk a partition at a time: the next starts where it ends
            live_next = await live_position(partition)
            if live_next is None:
                continue
            try:
                consumer = await self._consumer_for(reading)
                chunk = await self._read(consumer, request, partition, progress, live_next)
            except Exception:
                await self.close()  # a new one next time, on a broker that may have come back
                raise
            self.chunks.append(chunk)
            read = True
        return read

    async def _consumer_for(self, reading: set[int]) -> AIOKafkaConsumer:
        """The reading consumer, assigned `reading` (anew when it changes). Each partition is paused
        until its first seek: a partition without a position is fetched from its oldest event."""
        if self._consumer is None:
            # `earliest`: a position deleted by retention meanwhile moves to the oldest kept.
            self._consumer = clients.consumer(self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
            await self._consumer.start()
            self._reading = frozenset()
        if self._reading != reading:
            partitions = [TopicPartition(self.events_topic, p) for p in sorted(reading)]
            self._consumer.assign(partitions)
            self._consumer.pause(*partitions)
            self._reading, self._fetched_to = frozenset(reading), {}
        return self._consumer

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._reading, self._fetched_to = frozenset(), {}
        if consumer is not None:
            await stop_quietly(consumer)

    async def _read(
        self, consumer: AIOKafkaConsumer, request: BackfillRequest, partition: int, progress: Progress | None,
        live_next: int,
    ) -> Chunk:  # fmt: skip
        tp = TopicPartition(self.events_topic, partition)
        first: int | None = None
        if progress is None:  # begun here: from the date up to where the live router is
            first = (await consumer.beginning_offsets([tp]))[tp]
            found = (await consumer.offsets_for_times({tp: request.since_ms}))[tp]
            start = min(max(found.offset if found is not None else live_next, first), live_next)
            progress = Progress(start, live_next, start)
        # The live router is behind the end after a rebalance: its position is then the group's
        # commit until it has handled a batch, and the backfill waits for it.
        limit = min(progress.end, live_next)
        start = progress.next
        if start >= limit:
            return Chunk(request, partition, progress, [], start)
        if self._fetched_to.get(partition) != start:  # begun, another backfill's, or a chunk the router dropped
            if first is None:
                first = (await consumer.beginning_offsets([tp]))[tp]
            if start < first:  # deleted by the topic's retention before the backfill got to them
                log.warning("route.backfill_gap", backfill=request.id, partition=partition, events=first - start)
                start = first
            consumer.seek(tp, start)
            consumer.resume(tp)
        records: list[ConsumerRecord] = []
        while not records:
            batch = (await consumer.getmany(tp, timeout_ms=1000, max_records=CHUNK)).get(tp, [])
            if batch:
                self._fetched_to[partition] = batch[-1].offset + 1
                if batch[0].offset > start:  # retention deleted them while the backfill read
                    log.warning("route.backfill_gap", backfill=request.id, partition=partition,
                                events=min(batch[0].offset, limit) - start)  # fmt: skip
            records = [r for r in batch if r.offset < limit]
            if not records and await consumer.position(tp) >= limit:
                break
        read_to = records[-1].offset + 1 if records else limit
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
            "since": self.request.since.isoformat(),
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
            f"{self.request.subscription:<32} since {self.request.since.isoformat()}  "
            f"{self.routed:>10,} of {self.total:,} events read again  {state}"
        )


PROGRESS = "progress:"  # the router's backfill state: `progress:<backfill id>` -> Progress


async def summaries(bootstrap: str, names: TopicNames) -> list[Summary]:
    """Every backfill asked for, with how far it has come (the routers' progress state), over the
    partitions the events topic has."""
    requests = await read_requests(bootstrap, names.backfills)
    partitions = await partition_count(bootstrap, names.events)
    progress: dict[tuple[str, int], Progress] = {}
    async for record in read_topic(bootstrap, names.router_backfill, timeout=30.0):
        key = (record.key or b"").decode(errors="replace")
        if record.value is None or not key.startswith(PROGRESS):
            continue
        with skip_malformed(names.router_backfill):
            progress[(key.removeprefix(PROGRESS), record.partition)] = Progress.from_json(record.value)
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
