"""The router: `samband-events` -> one `samband-deliveries` record per entitled subscription.

Thin around agents/routing/router.py; read in batches by a `BatchService`
(bus/batches.py, consumer group `<app id>-router`). State, per partition of
`samband-events` (by person pseudonym), so a person's state lives where their events are,
durable in compacted topics recovered on assignment:
- `<app id>-router-persons`: pseudonym -> PersonState JSON (protection, birth date, who received data);
- `<app id>-router-records`: event id -> the subscriptions sent the event (the routing record
  that corrections and annulments follow), written as one segment per partition and batch
  (bus/state.py, SegmentedState). A correction is about the same person, so it
  finds the record in its own partition.
- `<app id>-router-held`: event id -> the corrections and annulments of it that arrived before
  it (their records sealed with SAMBAND_DLQ_KEY). Each is routed right after the event it
  names, or dead-lettered (`relation.unknown_corrected_event`) once it has waited
  SAMBAND_CORRECTION_HOLD_SECONDS; the wait is checked at each batch, and when the topic is
  idle at each poll.

The batch's deliveries are acknowledged before its state is written and its offsets committed
(crash-safe, at-least-once; the idempotency key `<event id>.<subscription id>` makes a repeat
harmless downstream). Each delivery record carries the event record's headers with its
`traceparent` replaced by a child span (a new trace when the event had none); dead-letter log
lines carry the event id, topic, partition, offset and trace id. No event is routed before
every subscription written before the start has been read.
"""

from __future__ import annotations

import base64
import time
from collections import defaultdict, deque
from collections.abc import Callable
from pathlib import Path

import orjson
import structlog
from aiokafka import ConsumerRecord, TopicPartition
from mode import Service

from agents import tracing
from agents.app import prepare_collector
from agents.config import Settings, dead_letter_key
from agents.routing.backfill import PER_BATCH, PROGRESS, BackfillRequest, Backfills, Chunk, Progress, fingerprint
from agents.routing.index import Entry, RoutingIndex
from agents.routing.life_stages import LIFE_EVENTS, LifeStages, NumberSeal, life_clock
from agents.routing.router import PersonState, Router
from agents.stage_runtime import StageRuntime, stage_group
from agents.subscriptions.model import Subscription
from bus.batches import BatchService, Write
from bus.state import PartitionedState, SegmentedState
from bus.store import DiskStore
from bus.topics import (
    DEADLETTER,
    DELIVERIES,
    EVENTS,
    ROUTER_BACKFILL,
    ROUTER_HELD,
    ROUTER_PERSONS,
    ROUTER_RECORDS,
    TopicNames,
)
from connectors.dead_letters import DeadLetter, DeadLetterSeal
from schemas.codec import Codec, WireFormatError
from schemas.protection import is_strict, scrub_address
from schemas.registry import registry_from_settings

log = structlog.get_logger(__name__)


class Route:
    def __init__(
        self,
        settings: Settings,
        topics: TopicNames,
        index: RoutingIndex,
        subscription_of: Callable[[str], Subscription | None],
        clock: Callable[[], float] | None = None,
        backfills: Backfills | None = None,
    ) -> None:
        self.topics = topics
        self.index = index
        self.subscription_of = subscription_of  # a live subscription, parsed (a backfill routes for it alone)
        self.codec = Codec(registry_from_settings(settings))
        self.router = Router(index)
        self.seal = DeadLetterSeal(dead_letter_key(settings))

        # Person state and routing records grow with the population and the
        # years: they are kept on disk (bus/store.py), with a bounded cache in memory.
        def disk(topic: str) -> DiskStore:
            return DiskStore.open(
                Path(settings.data_dir), topic, settings.state_cache_mb, settings.state_checkpoint_hours
            )

        # A person whose stored state cannot be read is treated as strengt fortrolig until the
        # register says otherwise: reading it as "not protected" could send an address.
        self.persons = PartitionedState(
            topics.router_persons,
            ROUTER_PERSONS.configs(),
            PersonState.from_json,
            fail_closed=PersonState("strengtFortrolig").to_json(),
            disk=disk(topics.router_persons),
        )
        # Why a correction's original is unknown, in its dead letter.
        self._no_record = (
            "the bus has no routing record of it: not routed, or routed more than "
            f"{settings.routing_records_retention_days:g} days ago (SAMBAND_ROUTING_RECORDS_RETENTION_DAYS)"
        )
        retention = int(settings.routing_records_retention_days * 86_400)
        self.records = SegmentedState(
            topics.router_records,
            ROUTER_RECORDS.configs(retention_ms=retention * 1000),
            disk(topics.router_records),
            retention_seconds=retention,
        )
        self.held = PartitionedState(topics.router_held, ROUTER_HELD.configs(), orjson.loads)
        # Backfills (agents/routing/backfill.py): `progress:<backfill id>` -> Progress JSON. (Whom a
        # backfill sent an event joins the event's routing record, which its corrections follow.)
        self.backfill_state = PartitionedState(
            topics.router_backfill, ROUTER_BACKFILL.configs(), disk=disk(topics.router_backfill)
        )
        self.states = [self.persons, self.records, self.held, self.backfill_state]
        self.backfills = backfills
        # subscription id -> (its routing entry, its fingerprint, a router for it alone)
        self._backfill_routers: dict[str, tuple[Entry, str, Router]] = {}
        self.batch_size = settings.batch_size
        self.live_next: dict[int, int] = {}  # partition -> the offset after the last event handled live
        self.life = LifeStages(
            self.codec,
            NumberSeal(dead_letter_key(settings)),
            self.persons,
            topics.events,
            clock or life_clock(settings),
        )
        self.hold_seconds = settings.correction_hold_seconds
        # Per partition, (held since, event id named) in arrival order: what falls due when.
        self.waiting: dict[int, deque[tuple[float, str]]] = defaultdict(deque)
        self.now = time.time()

    def handle_batch(self, messages: list[ConsumerRecord], outputs: list[Write]) -> None:
        self.now = time.time()
        live = self.live_next
        for message in messages:
            self.handle(message, outputs)
            live[message.partition] = message.offset + 1
        self._expire(outputs)
        self.life.emit_due(outputs)
        if self.backfills is not None and self.backfills.chunks and len(messages) <= self.batch_size // 2:
            for chunk in self.backfills.take(PER_BATCH):  # live traffic first: only into a batch half empty
                self._backfill(chunk, outputs)

    # --- backfills (agents/routing/backfill.py) ---------------------------------------------

    def progress_of(self, partition: int, backfill_id: str) -> Progress | None:
        value = self.backfill_state.partitions.get(partition, {}).get(PROGRESS + backfill_id)
        return None if value is None else Progress.from_json(value)

    def _backfill(self, chunk: Chunk, outputs: list[Write]) -> None:
        partition, request = chunk.partition, chunk.request
        if self.backfills is None or self.backfills.requests.get(request.subscription) != request:
            return  # cancelled, or replaced by a newer one
        router = self._backfill_router(request)
        live = self.live_next.get(partition)
        if router is None or live is None or partition not in self.persons.partitions:
            return  # the subscription changed or is gone, or the partition is no longer this router's
        if self.progress_of(partition, request.id) not in (None, chunk.progress):
            return  # read before a rebalance moved it on: read again from the progress now
        read_to, sent = chunk.read_to, False
        for message in chunk.records:
            if message.offset >= live:  # (the live router had handled it when read: it has still)
                read_to = message.offset
                break
            sent = self._backfill_one(router, message, outputs) or sent
        progress = chunk.progress.moved_to(read_to, live, sent)
        self.backfill_state.set(partition, PROGRESS + request.id, progress.to_json())
        if progress.done:
            log.info("route.backfill_partition_done", backfill=request.id, subscription=request.subscription,
                     partition=partition, events=progress.end - progress.start)  # fmt: skip

    def _backfill_router(self, request: BackfillRequest) -> Router | None:
        """A router for the request's subscription alone, while it is as it was when asked for."""
        entry = self.index.entries.get(request.subscription)
        if entry is None:
            return None
        cached = self._backfill_routers.get(request.subscription)
        if cached is None or cached[0] is not entry:  # made anew when the subscription changes (a new entry)
            subscription = self.subscription_of(request.subscription)
            if subscription is None:  # (not while the index has its entry: the follower changes both at once)
                return None
            alone = RoutingIndex()
            alone.put(subscription)
            cached = (entry, fingerprint(subscription), Router(alone, backfill=True))
            self._backfill_routers[request.subscription] = cached
        return cached[2] if cached[1] == request.fingerprint else None

    def backfill_current(self, request: BackfillRequest) -> bool:
        return self._backfill_router(request) is not None

    def _backfill_one(self, router: Router, message: ConsumerRecord, outputs: list[Write]) -> bool:
        """Route a retained event for one subscription, under the person's state now (the live
        router has handled every event up to this one and later ones too): the person's grade
        now is the least it is routed under. The person's `received` gains the subscription, so
        a later rise of the grade purges it too; the event's routing record gains it, so a later
        correction reaches it too (and it expires with the record: `records` renews the record's
        time when written). Returns whether it sent the subscription the event."""
        try:
            record = self.codec.decode(message.value)
        except WireFormatError:
            return False  # dead-lettered when it was first read
        envelope = record["envelope"]
        person, partition, event_id = message.key.decode(), message.partition, envelope["id"]
        (sub_id,) = router.index.entries
        sent = self.records.get(partition, event_id)
        if sent is not None and sub_id in sent:
            return False  # the live router sent it (the subscription existed), or this backfill before a restart
        now = PersonState.from_json(self.persons.get(partition, person))
        corrects = envelope["correctsEventId"]
        original = self.records.get(partition, corrects) if corrects else None
        # What it received before and purges pending belong to live routing, not to this one.
        state = now._replace(received=frozenset(), untied=frozenset())
        result = router.route(
            envelope["type"].rpartition(".")[2], record, person, state, original, at_least=now.protection
        )
        if not result.recipients:
            return False
        headers = tracing.child_kafka_headers(message.headers)
        outputs += [(self.topics.deliveries, d.key, d.value, headers, partition) for d in result.deliveries]
        if sent is not None:  # (expired: a correction goes to nobody, not to this subscription alone)
            self.records.set(partition, event_id, (*sent, sub_id))
        if sub_id not in now.received:
            self.persons.set(partition, person, now._replace(received=now.received | {sub_id}).to_json())
        return True

    def handle(self, message: ConsumerRecord, outputs: list[Write]) -> None:
        try:
            record = self.codec.decode(message.value)
        except WireFormatError as exc:
            outputs.append(self.dead_letter(message, exc.reason, str(exc)))
            return
        envelope = record["envelope"]
        event_type = envelope["type"].rpartition(".")[2]
        person = message.key.decode()
        partition = message.partition
        state = PersonState.from_json(self.persons.get(partition, person))
        original = None
        if envelope["correctsEventId"]:
            original = self.records.get(partition, envelope["correctsEventId"])
        result = self.router.route(event_type, record, person, state, original)

        if result.deliveries:
            headers = tracing.child_kafka_headers(message.headers)
            # The person's partition, as in the events topic: no hashing per delivery, and each
            # (subscription, person) stays in one partition of the deliveries topic.
            outputs += [(self.topics.deliveries, d.key, d.value, headers, partition) for d in result.deliveries]
        after = result.state
        if after.kommune is not None and is_strict(after.protection):  # whatever event revealed the grade
            after = after._replace(kommune=None)
        if event_type in LIFE_EVENTS:
            after = self.life.observe(event_type, record, after)
            if event_type == "Birth" and envelope["changeKind"] == "annulment":
                # The stages as emitted, under the grade now (this event may be what revealed it).
                emitted = state._replace(protection=after.protection, kommune=after.kommune)
                outputs += self.life.retractions(partition, person, emitted)
                after = after._replace(stages=frozenset())
            if event_type not in ("Move", "AddressProtectionChange"):  # these change the kommune, not a date
                self.life.schedule(partition, person, after)
        if after is not state:
            self.persons.set(partition, person, after.to_json())
        if result.unknown_original:
            if self.hold_seconds > 0:
                self._hold(message, envelope)
            else:
                outputs.append(self._unknown_original(message, record, result.state, self._no_record))
        else:
            self.records.set(partition, envelope["id"], tuple(result.recipients))
            # `waiting` lists every held correction (recovered() rebuilds it): none waiting, none held.
            if self.waiting.get(partition):
                self._release(partition, envelope["id"], outputs)

    # --- corrections that arrive before their original ------------------------------------

    def _hold(self, message: ConsumerRecord, envelope: dict) -> None:
        partition, original = message.partition, envelope["correctsEventId"]
        held = self.held.get(partition, original)
        entry = orjson.loads(held) if held else {"since": self.now, "held": []}
        entry["held"].append(
            {
                "key": message.key.decode(),
                "offset": message.offset,
                "timestamp": message.timestamp,
                "value": base64.b64encode(self.seal.seal(message.value)).decode("ascii"),
                "headers": [[k, base64.b64encode(v).decode("ascii")] for k, v in message.headers or ()],
            }
        )
        self.held.set(partition, original, orjson.dumps(entry))
        if held is None:
            self.waiting[partition].append((entry["since"], original))
        log.info(
            "route.correction_held",
            event_id=envelope["id"],
            corrects=original,
            topic=message.topic,
            partition=partition,
            offset=message.offset,
        )

    def _held_messages(self, partition: int, original: str) -> list[ConsumerRecord]:
        """The messages held for `original`, as they were read, and forgets them."""
        held = self.held.get(partition, original)
        if held is None:
            return []
        self.held.delete(partition, original)
        messages = []
        for item in orjson.loads(held)["held"]:
            value = self.seal.open(base64.b64decode(item["value"]))
            headers = [(k, base64.b64decode(v)) for k, v in item["headers"]]
            messages.append(
                ConsumerRecord(
                    self.topics.events,
                    partition,
                    item["offset"],
                    item["timestamp"],
                    0,
                    item["key"].encode(),
                    value,
                    None,
                    0,
                    len(value),
                    headers,
                )
            )
        return messages

    def _release(self, partition: int, original: str, outputs: list[Write]) -> None:
        """The event a held correction names was routed: the correction goes right after it."""
        for message in self._held_messages(partition, original):
            self.handle(message, outputs)

    def _expire(self, outputs: list[Write]) -> None:
        for partition, waiting in self.waiting.items():
            while waiting and self.now - waiting[0][0] >= self.hold_seconds:
                since, original = waiting.popleft()
                held = self.held.partitions.get(partition, {}).get(original)
                if held is None or orjson.loads(held)["since"] != since:
                    continue  # released since, or held again later
                for message in self._held_messages(partition, original):
                    record = self.codec.decode(message.value)
                    state = PersonState.from_json(self.persons.get(partition, message.key.decode()))
                    outputs.append(
                        self._unknown_original(
                            message,
                            record,
                            state,
                            f"held {self.hold_seconds:.0f} s for it, and {self._no_record}",
                        )
                    )

    def due(self) -> bool:
        now = time.time()
        held_due = any(waiting and now - waiting[0][0] >= self.hold_seconds for waiting in self.waiting.values())
        return held_due or self.life.due() or bool(self.backfills is not None and self.backfills.chunks)

    def _unknown_original(self, message: ConsumerRecord, record: dict, state: PersonState, why: str) -> Write:
        envelope = record["envelope"]
        event_type = envelope["type"].rpartition(".")[2]
        value = message.value
        if is_strict(state.protection) or is_strict(envelope.get("addressProtection")):
            value = self.codec.encode(scrub_address(event_type, record), self.codec.current_id(event_type))
        return self.dead_letter(
            message,
            "relation.unknown_corrected_event",
            f"{event_type} {envelope['changeKind']} names an event: {why}",
            value=value,
            event_id=envelope["id"],
        )

    def dead_letter(
        self, message: ConsumerRecord, reason: str, text: str, value: bytes | None = None, event_id: str | None = None
    ) -> Write:
        scrubbed = "address" if value is not None and value != message.value else None
        letter = DeadLetter(
            reason,
            text,
            "route",
            message.topic,
            message.partition,
            message.offset,
            event_id=event_id,
            scrubbed=scrubbed,
        )
        headers = list(message.headers)
        parent = tracing.from_kafka_headers(message.headers)
        log.info(
            "dead_letter",
            reason=reason,
            event_id=event_id,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            trace_id=parent.trace_id if parent else None,
        )
        return (
            self.topics.deadletter,
            message.key,
            self.seal.seal(value if value is not None else message.value),
            letter.headers(headers),
        )

    def end_batch(self) -> None:
        pass

    def recovered(self, partitions: set[int]) -> None:
        for partition in partitions:  # assigned anew: where the live router is, it learns again
            self.live_next.pop(partition, None)
        for partition in set(self.waiting) - set(self.held.partitions):
            del self.waiting[partition]
        for partition in partitions:
            entries = ((orjson.loads(v)["since"], k) for k, v in self.held.partitions.get(partition, {}).items())
            self.waiting[partition] = deque(sorted(entries))
        self.life.recovered(partitions)


class RouteService(BatchService):
    """The router stage: its batch consumer, with `Route` as its logic, routing under the
    worker's subscriptions (its own index of them, fed by the worker's follower)."""

    def __init__(self, settings: Settings, runtime: StageRuntime, **kwargs):
        self.follower = runtime.subscriptions
        self.index = RoutingIndex()
        self.follower.listen(self.index.put, self.index.remove)
        topics = runtime.topics
        self.backfills = Backfills(runtime.bootstrap, topics.backfills, topics.events)
        super().__init__(
            **runtime.batch_settings(),
            source=topics.events,
            group=stage_group(settings.app_id, "route"),
            outputs=[topics.deliveries, topics.deadletter, topics.events],  # events: life stages
            topic_configs=runtime.configs(EVENTS, DELIVERIES, DEADLETTER),
            logic=lambda: Route(settings, topics, self.index, self.follower.subscription, backfills=self.backfills),
            ready=self._subscriptions_read,
            before_batch=self._subscriptions_current,
            **kwargs,
        )

    @Service.task
    async def _follow_backfills(self) -> None:
        while not self.should_stop:
            try:
                await self.backfills.follow()
            except Exception as exc:  # the broker, gone for a while: follow again from the start
                log.warning("route.backfills_not_followed", error=type(exc).__name__)
                await self.sleep(5.0)

    @Service.task
    async def _read_backfills(self) -> None:
        """Keep a few chunks of every running backfill read ahead for the partitions held."""
        await self.follower.caught_up.wait()
        while not self.should_stop:
            self.backfills.taken.clear()
            read = False
            if self.backfills.requests and self.held and self.logic is not None:
                try:
                    read = await self.backfills.read_ahead(
                        set(self.held), self.logic.progress_of, self._live_position, self.logic.backfill_current
                    )
                except Exception as exc:  # the broker: the live path rides it out, this tries again
                    log.warning("route.backfill_not_read", error=type(exc).__name__)
                    await self.sleep(5.0)
                    continue
            else:  # the last request cancelled, or no partition held: nothing to read with it
                await self.backfills.close()
            if not read:
                # A chunk taken, or a second passed (a new request, a partition assigned).
                await self.wait_first(self.backfills.taken.wait(), timeout=1.0)

    async def on_stop(self) -> None:
        await super().on_stop()
        await self.backfills.close()

    async def _live_position(self, partition: int) -> int | None:
        """How far the live router has handled `partition`: as it handled it, or, before it has
        handled anything since the partition was assigned, the group's commit (never ahead)."""
        known = self.logic.live_next.get(partition)
        if known is not None or self.consumer is None:
            return known
        tp = TopicPartition(self.source, partition)
        committed = await self.consumer.committed(tp)
        if committed is None:  # the group has committed nothing: it reads from the partition's start
            committed = (await self.consumer.beginning_offsets([tp]))[tp]
        return self.logic.live_next.setdefault(partition, committed)

    async def _subscriptions_read(self) -> None:
        await self.follower.caught_up.wait()
        prepare_collector()  # the index of up to ~18,000 subscriptions, out of the collector's way
        log.info("router_ready", subscriptions=len(self.index))

    async def _subscriptions_current(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        newest = max(record.timestamp for records in batch.values() for record in records)
        try:
            await self.follower.sync_for(newest)
        except TimeoutError:  # the topic is slow to read: route under the set known, as a moment ago
            log.warning("router_subscriptions_not_current", applied=self.follower.position)


def build(settings: Settings, runtime: StageRuntime) -> RouteService:
    return RouteService(settings, runtime)
