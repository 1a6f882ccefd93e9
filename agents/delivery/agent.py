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

from agents import metrics
from agents.app import app, batch_service_settings, freeze_heap
from agents.config import bootstrap_servers, dead_letter_key, get_settings, webhook_allow_list
from agents.delivery.breaker import Breaker
from agents.delivery.dispatcher import Dispatcher
from agents.delivery.egress import Egress, Grades
from agents.delivery.queues import DeliveryQueues
from agents.delivery.target import TargetError, parse_target
from bus import clients
from bus.batches import BatchService
from bus.malformed import MALFORMED, json_object, skip_malformed
from bus.reading import read_topic
from bus.topics import BUS_PARTITIONS, LEDGER, ROUTER_PERSONS, STATUS, ensure_topics, topic_names
from connectors.dead_letters import DeadLetterSeal
from connectors.kafka_sink.config import KafkaSinkConfig
from schemas.registry import registry_from_settings

log = structlog.get_logger(__name__)

settings = get_settings()
topics = topic_names(app.conf.id)


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

    def __init__(self) -> None:
        self.producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._created: set[str] = set()

    async def ensure(self, topic: str) -> None:
        if topic not in self._created:
            await ensure_topics(bootstrap_servers(), {topic: {}}, BUS_PARTITIONS)
            self._created.add(topic)

    async def write(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        """One record; returns once acknowledged."""
        await self.ensure(topic)
        producer = self.producer or await self._start()
        await (await producer.send(topic, value, key=key, headers=headers))

    async def save_status(self, sub: str, status: dict) -> None:
        """A subscription's delivery status (verified, disabled, suspended); returns once acknowledged."""
        producer = self.producer or await self._start()
        await (await producer.send(topics.status, json.dumps(status).encode(), key=sub.encode()))

    async def _start(self) -> AIOKafkaProducer:
        async with self._starting:
            if self.producer is None:
                producer = clients.producer(bootstrap_servers(), acks="all", request_timeout_ms=self.REQUEST_TIMEOUT_MS)
                await producer.start()
                self.producer = producer
        return self.producer

    async def stop(self) -> None:
        if self.producer is not None:
            producer, self.producer = self.producer, None
            await producer.stop()


direct_writes = DirectWrites()
grades = Grades()
dispatcher = Dispatcher(
    lambda key, entry, outcome: queues.apply(key, entry, outcome),
    direct_writes.save_status,
    Egress(grades, settings.pseudonym_key.encode()),
    {
        "topic_writer": direct_writes.write,
        "schema_registry": registry_from_settings(settings),
        "webhook_allow": webhook_allow_list(settings),
        "secrets_dir": settings.secrets_dir,
    },
    Breaker(settings.breaker_failures, settings.breaker_probe_seconds),
)
queues = DeliveryQueues(
    topics,
    dispatcher,
    DeadLetterSeal(dead_letter_key(settings)),
    grades,
    store_after=settings.delivery_store_after_seconds,
    memory_limit=settings.delivery_memory_per_subscription,
)
# Set once every subscription and delivery status written before the start has been read:
# records of a subscription not yet known would otherwise all be stored as waiting.
subscriptions_read = asyncio.Event()


@app.service
class DeliveryService(BatchService):
    def __init__(self, **kwargs):
        super().__init__(
            **batch_service_settings(),
            source=topics.deliveries,
            group=f"{app.conf.id}-delivery",
            outputs=[topics.outcomes, topics.ledger, topics.deadletter],
            logic=lambda: queues,
            ready=subscriptions_read.wait,
            **kwargs,
        )

    async def _ensure_topics(self) -> None:
        """The ledger is compacted: made so at the start, and again if deleted during an outage."""
        await LEDGER.ensure(self.bootstrap, app.conf.id, self.partition_count)
        await super()._ensure_topics()

    async def on_started(self) -> None:
        freeze_heap()

    _writing: asyncio.Task | None = None

    async def on_batch(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Records are taken in at once, so heads go out without waiting for a write; the attempt
        log, ledger, dead letters and pending queues are written, and offsets committed, in a
        cycle of their own, one at a time (a revocation waits for it: it holds the lock)."""
        records, _ = self.held_records(batch)
        if records:
            queues.accept(records)
            metrics.event_in(self.source, len(records))
        queues.store_overdue()
        if self._writing is not None and self._writing.done():
            self._writing.result()  # a failed write stops the consumer, as a failed batch would
            self._writing = None
        if queues.has_work and self._writing is None:
            self._writing = asyncio.create_task(self._write())

    async def _write(self) -> None:
        async with self._lock:
            await self._process({})

    async def on_stop(self) -> None:
        await dispatcher.close()  # attempts in flight go out again after the restart (same webhook-id)
        if self._consuming:  # (a stop during the start comes before the consuming task ever ran)
            await self._finished.wait()
            if self._writing is not None:
                await self._writing
            await self._write()  # what was decided before the stop: ledger entries, then the commit
        await super().on_stop()
        await direct_writes.stop()

    def committable(self, done: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        return {TopicPartition(self.source, p): offset for p, offset in queues.committable().items()}

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        partitions = {tp.partition for tp in revoked}
        try:
            await dispatcher.let_go(partitions)  # nothing of theirs leaves after the last commit
            if self._writing is not None:
                await asyncio.gather(self._writing, return_exceptions=True)
                self._writing = None
            await self._write()  # the last commit covers every outcome applied: none is sent again
            await super().on_partitions_revoked(revoked)
        finally:
            queues.revoked(partitions)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await super().on_partitions_assigned(assigned)
        queues.assigned({tp.partition for tp in assigned})

    async def _abandon(self) -> None:
        """The broker is gone (bus/batches.py): the write cycle in flight is given up too."""
        if self._writing is not None:
            self._writing.cancel()
            await asyncio.gather(self._writing, return_exceptions=True)
            self._writing = None
        await super()._abandon()

    def partitions_lost(self, partitions: set[int]) -> None:
        super().partitions_lost(partitions)
        queues.revoked(partitions)  # attempts in flight are ignored; their deliveries go again (same webhook-id)


@app.task
async def _read_backlogs() -> None:
    """Reads again, from the deliveries topic, the records that subscriptions at their memory limit
    left there (queues.py), as they get room: a consumer of its own, outside the group, on the
    partitions this worker holds. A broker error is waited out and the read tried again."""
    await subscriptions_read.wait()
    reader = BacklogReader(bootstrap_servers(), topics.deliveries, f"{app.conf.id}-delivery")
    while True:
        try:
            await reader.run()
        except KafkaError as exc:  # the broker is away: waited out, like the stages' outages
            log.warning("delivery.backlog_read_failed", error=type(exc).__name__)
            await asyncio.sleep(2.0)  # back off before a new consumer


class BacklogReader:
    def __init__(self, bootstrap: str, topic: str, group: str):
        self.bootstrap, self.topic, self.group = bootstrap, topic, group
        self._next: dict[int, int] = {}  # partition -> where the consumer reads next, to seek only when it must

    async def run(self) -> None:
        # auto_offset_reset: a cursor the topic's retention has passed reads from the topic's start,
        # and the gap is reported (queues.expired).
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
                    queues.report_memory()
                    reported = now
                if unknown := queues.starts_unknown():
                    await self._learn_starts(admin, unknown)
                wanted = queues.backlog_wanted()
                if not wanted:
                    queues.backlog_ready.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):  # ownership and the group's progress change unsignalled
                            await queues.backlog_ready.wait()
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
            if tp.partition in queues.owned:  # (given up meanwhile: asked again when it comes back)
                queues.read_from.setdefault(tp.partition, max(meta.offset, 0) if meta is not None else 0)

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
            queues.take_backlog(tp.partition, wanted[tp.partition], records)
        if not batch:  # nothing where records were left: has the retention passed them?
            for tp, first in (await consumer.beginning_offsets(list(partitions.values()))).items():
                if first > wanted[tp.partition]:
                    queues.expired(tp.partition, first)
                    self._next.pop(tp.partition, None)


@app.task
async def _run_dispatcher() -> None:
    await dispatcher.run()


@app.task
async def _follow_subscriptions() -> None:
    """Every worker reads the subscriptions and their delivery status whole, and keeps following."""
    bootstrap = bootstrap_servers()
    await STATUS.ensure(bootstrap, app.conf.id)
    await ROUTER_PERSONS.ensure(bootstrap, app.conf.id, BUS_PARTITIONS)
    # Status first, so a restart does not repeat verification handshakes already passed.
    async for record in read_topic(bootstrap, topics.status):
        with skip_malformed(record.topic):
            await _on_status(record)
    async for record in read_topic(bootstrap, topics.subscriptions):
        with skip_malformed(record.topic):
            await _on_subscription(record)
    async for record in read_topic(
        bootstrap, topics.router_persons
    ):  # the router's person state: grades now  # every grade before the first delivery leaves
        _on_person(record)
    subscriptions_read.set()
    consumer = clients.consumer(
        bootstrap,
        topics.subscriptions,
        topics.status,
        topics.router_persons,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=5000,
    )
    await consumer.start()
    try:
        async for record in consumer:
            with skip_malformed(record.topic):
                if record.topic == topics.status:
                    await _on_status(record)
                elif record.topic == topics.router_persons:
                    _on_person(record)
                else:
                    await _on_subscription(record)
    finally:
        await consumer.stop()


def _on_person(record) -> None:
    with skip_malformed(record.topic):
        try:
            grades.apply_state(record.key, record.value)
        except MALFORMED:
            if record.key:  # unreadable: the strictest grade, never "none" (as the router reads it)
                grades.set(record.key.decode(errors="replace"), "strengtFortrolig")
            raise


async def _on_status(record) -> None:
    sub = record.key.decode()
    await dispatcher.set_status(sub, json_object(record.value) if record.value is not None else None)


async def _on_subscription(record) -> None:
    sub = record.key.decode()
    if record.value is None:
        await dispatcher.set_target(sub, None)
        return
    try:
        target = parse_target(sub, json_object(record.value))
    except TargetError as exc:
        log.error("delivery.subscription_invalid", subscription=sub, reason=TargetError.reason, error=str(exc))
        await dispatcher.set_target(sub, None)
        return
    if isinstance(target.sink, KafkaSinkConfig):
        try:
            await direct_writes.ensure(target.sink.topic)
        except Exception as exc:  # the broker, not the subscription, is at fault: tried again before the first record
            log.warning("delivery.subscriber_topic_not_created", subscription=sub, error=type(exc).__name__)
    await dispatcher.set_target(sub, target)
