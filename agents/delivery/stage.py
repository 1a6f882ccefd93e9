"""The delivery stage: `samband-deliveries` in, signed webhooks or Kafka records out (docs/delivery.md).

`DeliveryService` reads `samband-deliveries` in batches (a `BatchService`, consumer group
`<app id>-delivery`); `DeliveryQueues` (queues.py) keeps the per-(subscription, person) queues
and applies each attempt's outcome in this process; the `Dispatcher` sends heads through one
lane per subscription. Per cycle the batch service writes the attempt log, ledger entries and
dead letters, then the pending queues, then commits only below the oldest delivery still open,
so a crash loses nothing; attempts in flight at a crash go out again with the same webhook-id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from mode import Service

from agents import metrics
from agents.app import prepare_collector
from agents.config import Settings, dead_letter_key
from agents.delivery.breaker import Breaker
from agents.delivery.dispatcher import Dispatcher
from agents.delivery.egress import Egress, Grades
from agents.delivery.queues import DeliveryQueues
from agents.delivery.target import Target, TargetError, bus_lends, parse_target
from agents.stage_runtime import StageRuntime, stage_group
from agents.subscriptions.model import Subscription
from bus import clients
from bus.batches import BatchService
from bus.malformed import MALFORMED, json_object, skip_malformed
from bus.reading import read_topic
from bus.topics import (
    DEADLETTER,
    DELIVERIES,
    DISCLOSURES,
    LEDGER,
    OUTCOMES,
    ROUTER_PERSONS,
    STATUS,
    ensure_table_topics,
    ensure_topics,
    layout,
)
from connectors.dead_letters import DeadLetterSeal
from schemas.registry import registry_from_settings

log = structlog.get_logger(__name__)


class DirectWrites:
    """What delivery writes outside its batch cycles, through a producer of its own (acks=all),
    started at the first write: Kafka subscribers' records and each subscription's delivery
    status. A batch that cannot be written expires after REQUEST_TIMEOUT_MS, and the Kafka sink's
    own timeout makes it an attempt to retry (a producer that kept retrying for minutes, as
    Faust's did, left every other write queued behind a topic the broker was still creating).

    The bus creates each subscriber topic (`ensure`): when its subscription is read, and again
    before its first record if that failed. It has the bus's partition count (one person's
    records stay in one partition) and the broker's default retention."""

    REQUEST_TIMEOUT_MS = 30_000

    def __init__(self, bootstrap: str, status_topic: str) -> None:
        self.bootstrap, self.status_topic = bootstrap, status_topic
        self.producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._created: set[str] = set()

    async def ensure(self, topic: str) -> None:
        if topic not in self._created:
            await ensure_topics(self.bootstrap, {topic: {}}, layout().partitions)
            self._created.add(topic)

    def pull_topics(self, retention_days: float):
        """How a pull subscription's topic is made: one partition (its order, an offset a cursor), kept this long."""
        configs = {"cleanup.policy": "delete", "retention.ms": str(int(retention_days * 86_400_000))}

        async def ensure_pull(topic: str) -> None:
            if topic not in self._created:
                # Checked: a pull topic of more partitions would scatter the subscriber's deliveries,
                # and its reader reads partition 0 alone.
                await ensure_topics(self.bootstrap, {topic: configs}, 1, check=True)
                self._created.add(topic)

        return ensure_pull

    async def write(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        """One record; returns once acknowledged."""
        await self.ensure(topic)
        producer = self.producer or await self._start()
        await (await producer.send(topic, value, key=key, headers=headers))

    async def save_status(self, sub: str, status: dict) -> None:
        """A subscription's delivery status (verified, disabled, suspended); returns once acknowledged."""
        producer = self.producer or await self._start()
        await (await producer.send(self.status_topic, json.dumps(status).encode(), key=sub.encode()))

    async def _start(self) -> AIOKafkaProducer:
        async with self._starting:
            if self.producer is None:
                producer = clients.producer(self.bootstrap, acks="all", request_timeout_ms=self.REQUEST_TIMEOUT_MS)
                await producer.start()
                self.producer = producer
        return self.producer

    async def stop(self) -> None:
        if self.producer is not None:
            producer, self.producer = self.producer, None
            await producer.stop()


class DeliveryService(BatchService):
    """The delivery stage: its batch consumer with the queues as its logic, the dispatcher that
    sends, and what follows the subscriptions (from the worker's follower), their delivery status
    and each person's grade."""

    def __init__(self, settings: Settings, runtime: StageRuntime, **kwargs):
        self.settings, self.topics = settings, runtime.topics
        if settings.retry_min_seconds < 1.0:
            log.warning("delivery.retry_min_below_default", seconds=settings.retry_min_seconds, default=1.0)
        self.follower = runtime.subscriptions
        self.direct_writes = DirectWrites(runtime.bootstrap, self.topics.status)
        self.grades = Grades()
        self.egress = Egress(self.grades, settings.pseudonym_key.encode())  # also the pull endpoint's
        self.lends = bus_lends(settings)  # what every delivery kind's sink may use (connectors.api.Context)
        self.dispatcher = Dispatcher(
            lambda key, entry, outcome: self.queues.apply(key, entry, outcome),
            self.direct_writes.save_status,
            self.egress,
            {
                **self.lends,
                "topic_writer": self.direct_writes.write,
                "ensure_topic": self.direct_writes.ensure,
                "ensure_pull_topic": self.direct_writes.pull_topics(settings.pull_retention_days),
                "schema_registry": registry_from_settings(settings),
            },
            Breaker(settings.breaker_failures, settings.breaker_probe_seconds),
        )
        self.queues = DeliveryQueues(
            self.topics,
            self.dispatcher,
            DeadLetterSeal(dead_letter_key(settings)),
            self.grades,
            store_after=settings.delivery_store_after_seconds,
            memory_limit=settings.delivery_memory_per_subscription,
            worker_memory_limit=settings.delivery_memory_per_worker,
        )
        # Set once every subscription and delivery status written before the start has been read:
        # records of a subscription not yet known would otherwise all be stored as waiting.
        self.subscriptions_read = asyncio.Event()
        # The follower's changes, applied in order by `_follow` (setting a target is async).
        self._changes: asyncio.Queue[tuple[str, Target | None]] = asyncio.Queue()
        self.follower.listen(self._subscription_put, self._subscription_deleted)
        self._writing: asyncio.Task | None = None
        super().__init__(
            **runtime.batch_settings(),
            source=self.topics.deliveries,
            group=stage_group(settings.app_id, "deliver"),
            outputs=[self.topics.outcomes, self.topics.ledger, self.topics.disclosures, self.topics.deadletter],
            topic_configs=runtime.configs(DELIVERIES, OUTCOMES, LEDGER, DEADLETTER)
            | {self.topics.disclosures: DISCLOSURES.configs(int(settings.disclosure_retention_days * 86_400_000))},
            logic=lambda: self.queues,
            ready=self.subscriptions_read.wait,
            **kwargs,
        )

    async def on_started(self) -> None:
        prepare_collector()

    async def on_batch(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Records are taken in at once, so heads go out without waiting for a write; the attempt
        log, ledger, dead letters and pending queues are written, and offsets committed, in a
        cycle of their own, one at a time (a revocation waits for it: it holds the lock)."""
        records, _ = self.held_records(batch)
        if records:
            self.queues.accept(records)
            metrics.event_in(self.source, len(records))
        self.queues.store_overdue()
        if self._writing is not None and self._writing.done():
            self._writing.result()  # a failed write stops the consumer, as a failed batch would
            self._writing = None
        if self.queues.has_work and self._writing is None:
            self._writing = asyncio.create_task(self._write())

    async def _write(self) -> None:
        async with self._lock:
            await self._process({})

    async def on_stop(self) -> None:
        await self.dispatcher.close()  # attempts in flight go out again after the restart (same webhook-id)
        if self._consuming:  # (a stop during the start comes before the consuming task ever ran)
            await self._finished.wait()
            if self._writing is not None:
                await self._writing
            await self._write()  # what was decided before the stop: ledger entries, then the commit
        await super().on_stop()
        await self.direct_writes.stop()

    def committable(self, done: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        return {TopicPartition(self.source, p): offset for p, offset in self.queues.committable().items()}

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        partitions = {tp.partition for tp in revoked}
        try:
            await self.dispatcher.let_go(partitions)  # nothing of theirs leaves after the last commit
            if self._writing is not None:
                await asyncio.gather(self._writing, return_exceptions=True)
                self._writing = None
            await self._write()  # the last commit covers every outcome applied: none is sent again
            await super().on_partitions_revoked(revoked)
        finally:
            self.queues.revoked(partitions)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await super().on_partitions_assigned(assigned)
        self.queues.assigned({tp.partition for tp in assigned})

    async def _abandon(self) -> None:
        """The broker is gone (bus/batches.py): the write cycle in flight is given up too."""
        if self._writing is not None:
            self._writing.cancel()
            await asyncio.gather(self._writing, return_exceptions=True)
            self._writing = None
        await super()._abandon()

    def partitions_lost(self, partitions: set[int]) -> None:
        super().partitions_lost(partitions)
        self.queues.revoked(partitions)  # attempts in flight are ignored; their deliveries go again (same webhook-id)

    @Service.task
    async def _run_dispatcher(self) -> None:
        await self.dispatcher.run()

    @Service.task
    async def _read_backlogs(self) -> None:
        """Reads again, from the deliveries topic, the records that subscriptions at their memory limit
        left there (queues.py), as they get room: a consumer of its own, outside the group, on the
        partitions this worker holds. A broker error is waited out and the read tried again."""
        await self.subscriptions_read.wait()
        reader = BacklogReader(self.bootstrap, self.topics.deliveries, self.group, self.queues)
        while True:
            try:
                await reader.run()
            except KafkaError as exc:  # the broker is away: waited out, like the stages' outages
                log.warning("delivery.backlog_read_failed", error=type(exc).__name__)
                await asyncio.sleep(2.0)  # back off before a new consumer

    @Service.task
    async def _follow(self) -> None:
        """Every worker reads the delivery status, the subscriptions and each person's grade
        whole, then keeps following them."""
        topics = self.topics
        await ensure_table_topics(self.bootstrap, self.settings.app_id, [STATUS, ROUTER_PERSONS])
        # Status first, so a restart does not repeat verification handshakes already passed.
        read_up_to: dict[str, dict[int, int]] = {topics.status: {}, topics.router_persons: {}}
        async for record in read_topic(self.bootstrap, topics.status, ends=read_up_to[topics.status]):
            with skip_malformed(record.topic):
                await self._on_status(record)
        await self.follower.caught_up.wait()
        while not self._changes.empty():
            await self.dispatcher.set_target(*self._changes.get_nowait())
        persons = read_topic(self.bootstrap, topics.router_persons, ends=read_up_to[topics.router_persons])
        async for record in persons:  # the router's person state: each person's grade now
            self._on_person(record)
        self.subscriptions_read.set()
        await asyncio.gather(self._apply_changes(), self._follow_status_and_grades(read_up_to))

    async def _apply_changes(self) -> None:
        while True:
            await self.dispatcher.set_target(*await self._changes.get())

    async def _follow_status_and_grades(self, read_up_to: dict[str, dict[int, int]]) -> None:
        """From where the start's read ended, never from the beginning again: a grade read anew
        from an older record would hold, until the newer one came round again, and a delivery
        could leave under it (a protected person read as unprotected)."""
        consumer = clients.consumer(self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            positions = {TopicPartition(t, p): end for t, ends in read_up_to.items() for p, end in ends.items()}
            consumer.assign(list(positions))
            for tp, end in positions.items():
                consumer.seek(tp, end)
            async for record in consumer:
                with skip_malformed(record.topic):
                    if record.topic == self.topics.status:
                        await self._on_status(record)
                    else:
                        self._on_person(record)
        finally:
            await consumer.stop()

    def _on_person(self, record) -> None:
        with skip_malformed(record.topic):
            try:
                self.grades.apply_state(record.key, record.value)
            except MALFORMED:
                if record.key:  # unreadable: the strictest grade, never "none" (as the router reads it)
                    self.grades.set(record.key.decode(errors="replace"), "strengtFortrolig")
                raise

    async def _on_status(self, record) -> None:
        sub = record.key.decode()
        await self.dispatcher.set_status(sub, json_object(record.value) if record.value is not None else None)

    def _subscription_put(self, sub: Subscription) -> None:
        """From the worker's follower, which has parsed and validated the subscription."""
        try:
            target = parse_target(sub.id, json.loads(sub.to_json()), self.lends)
        except TargetError as exc:
            log.error("delivery.subscription_invalid", subscription=sub.id, reason=TargetError.reason, error=str(exc))
            target = None
        self._changes.put_nowait((sub.id, target))

    def _subscription_deleted(self, sub_id: str) -> None:
        self._changes.put_nowait((sub_id, None))


class BacklogReader:
    def __init__(self, bootstrap: str, topic: str, group: str, queues: DeliveryQueues):
        self.bootstrap, self.topic, self.group, self.queues = bootstrap, topic, group, queues
        self._next: dict[int, int] = {}  # partition -> where the consumer reads next, to seek only when it must

    async def run(self) -> None:
        # auto_offset_reset: a cursor the topic's retention has passed reads from the topic's start,
        # and the gap is reported (self.queues.expired).
        consumer = clients.consumer(
            self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", metadata_max_age_ms=5000
        )
        admin = clients.admin(self.bootstrap)
        await consumer.start()
        try:
            await admin.start()
            reported = 0.0
            while True:
                if (now := time.monotonic()) - reported >= 1.0:
                    self.queues.report_memory()
                    reported = now
                if unknown := self.queues.starts_unknown():
                    await self._learn_starts(admin, unknown)
                wanted = self.queues.backlog_wanted()
                if not wanted:
                    self.queues.backlog_ready.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):  # ownership and the group's progress change unsignalled
                            await self.queues.backlog_ready.wait()
                    continue
                await self._read(consumer, wanted)
        finally:
            await consumer.stop()
            await admin.close()

    async def _learn_starts(self, admin: AIOKafkaAdminClient, partitions: set[int]) -> None:
        """Where the group consumer began each partition: its committed offset (0 when none)."""
        tps = [TopicPartition(self.topic, p) for p in partitions]
        committed = await admin.list_consumer_group_offsets(self.group, partitions=tps)
        for tp in tps:
            meta = committed.get(tp)
            if tp.partition in self.queues.owned:  # (given up meanwhile: asked again when it comes back)
                self.queues.read_from.setdefault(tp.partition, max(meta.offset, 0) if meta is not None else 0)

    async def _read(self, consumer: AIOKafkaConsumer, wanted: dict[int, int]) -> None:
        partitions = {p: TopicPartition(self.topic, p) for p in wanted}
        if set(partitions.values()) != consumer.assignment():
            consumer.assign(list(partitions.values()))
            self._next = {}
        for p, start in wanted.items():
            if self._next.get(p) != start:  # a seek drops what the consumer has fetched ahead
                consumer.seek(partitions[p], start)
                self._next[p] = start
        batch = await consumer.getmany(*partitions.values(), timeout_ms=1000, max_records=2000)
        for tp, records in batch.items():
            self._next[tp.partition] = records[-1].offset + 1
            self.queues.take_backlog(tp.partition, wanted[tp.partition], records)
        if not batch:  # nothing where records were left: has the retention passed them?
            for tp, first in (await consumer.beginning_offsets(list(partitions.values()))).items():
                if first > wanted[tp.partition]:
                    self.queues.expired(tp.partition, first)
                    self._next.pop(tp.partition, None)


def build(settings: Settings, runtime: StageRuntime) -> DeliveryService:
    return DeliveryService(settings, runtime)
