"""The router: `samband-events` -> one `samband-deliveries` record per entitled subscription.

Thin around agents/routing/router.py; read in batches by a `BatchService`
(agents/routing/batches.py, consumer group `<app id>-router`). State, per partition of
`samband-events` (by person pseudonym), so a person's state lives where their events are,
durable in compacted topics recovered on assignment:
- `<app id>-router-persons`: pseudonym -> PersonState JSON (protection, birth date, who received data);
- `<app id>-router-records`: event id -> the subscriptions sent the event (the routing record
  that corrections and annulments follow), written as one segment per partition and batch
  (agents/routing/state.py, SegmentedState). A correction is about the same person, so it
  finds the record in its own partition.

The batch's deliveries are acknowledged before its state is written and its offsets committed
(crash-safe, at-least-once; the idempotency key `<event id>.<subscription id>` makes a repeat
harmless downstream). Each delivery record carries the event record's headers with its
`traceparent` replaced by a child span (a new trace when the event had none); dead-letter log
lines carry the event id, topic, partition, offset and trace id. No event is routed before
every subscription written before the start has been read.
"""

from __future__ import annotations

import structlog
from aiokafka import ConsumerRecord, TopicPartition

from agents import tracing
from agents.app import app, batch_service_settings, freeze_heap
from agents.config import bootstrap_servers, dead_letter_key, get_settings
from agents.routing.batches import BatchService, Output
from agents.routing.index import RoutingIndex
from schemas.protection import is_strict, scrub_address
from agents.routing.router import PersonState, Router
from agents.routing.state import PartitionedState, SegmentedState
from agents.routing.topics import bus_topics
from agents.subscriptions.store import SubscriptionFollower
from connectors.dead_letters import DeadLetter, DeadLetterSeal
from schemas.codec import Codec, WireFormatError
from schemas.registry import registry_from_settings

log = structlog.get_logger(__name__)

settings = get_settings()
topics = bus_topics(app.conf.id)

index = RoutingIndex()
follower = SubscriptionFollower(bootstrap_servers(), topics.subscriptions, index.put, index.remove)


@app.task
async def follow_subscriptions() -> None:
    await follower.run()


class Route:
    def __init__(self) -> None:
        self.codec = Codec(registry_from_settings(settings))
        self.router = Router(index)
        self.seal = DeadLetterSeal(dead_letter_key(settings))
        # A person whose stored state cannot be read is treated as strengt fortrolig until the
        # register says otherwise: reading it as "not protected" could send an address.
        self.persons = PartitionedState(f"{app.conf.id}-router-persons", {"cleanup.policy": "compact"},
                                        PersonState.from_json, fail_closed=PersonState("strengtFortrolig").to_json())
        self.records = SegmentedState(f"{app.conf.id}-router-records", {"cleanup.policy": "compact"})
        self.states = [self.persons, self.records]

    def handle_batch(self, messages: list[ConsumerRecord], outputs: list[Output]) -> None:
        for message in messages:
            self.handle(message, outputs)

    def handle(self, message: ConsumerRecord, outputs: list[Output]) -> None:
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
            outputs += [(topics.deliveries, d.key, d.value, headers, partition) for d in result.deliveries]
        if result.state is not state:
            self.persons.set(partition, person, result.state.to_json())
        if result.unknown_original:
            value = message.value
            if is_strict(result.state.protection):
                value = self.codec.encode(scrub_address(event_type, record), self.codec.current_id(event_type))
            outputs.append(self.dead_letter(message, "relation.unknown_corrected_event",
                                            f"{event_type} {envelope['changeKind']} names an event the bus has not routed",
                                            value=value, event_id=envelope["id"]))
        else:
            self.records.set(partition, envelope["id"], tuple(result.recipients))

    def dead_letter(self, message: ConsumerRecord, reason: str, text: str, value: bytes | None = None,
                    event_id: str | None = None) -> Output:
        scrubbed = "address" if value is not None and value != message.value else None
        letter = DeadLetter(reason, text, "route", message.topic, message.partition, message.offset,
                            event_id=event_id, scrubbed=scrubbed)
        headers = list(message.headers)
        parent = tracing.from_kafka_headers(message.headers)
        log.info("dead_letter", reason=reason, event_id=event_id, topic=message.topic, partition=message.partition,
                 offset=message.offset, trace_id=parent.trace_id if parent else None)
        return topics.deadletter, message.key, self.seal.seal(value if value is not None else message.value), letter.headers(headers)

    def end_batch(self) -> None:
        pass

    def recovered(self, partitions: set[int]) -> None:
        pass


async def _subscriptions_read() -> None:
    await follower.caught_up.wait()
    freeze_heap()  # the index of up to ~18,000 subscriptions, out of the collector's way
    log.info("router_ready", subscriptions=len(index))


async def _subscriptions_current(batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
    newest = max(record.timestamp for records in batch.values() for record in records)
    try:
        await follower.sync_for(newest)
    except TimeoutError:  # the topic is slow to read: route under the set known, as a moment ago
        log.warning("router_subscriptions_not_current", applied=follower.position)


@app.service
class RouteService(BatchService):
    def __init__(self, **kwargs):
        super().__init__(
            **batch_service_settings(), source=topics.events, group=f"{app.conf.id}-router",
            outputs=[topics.deliveries, topics.deadletter], logic=Route, ready=_subscriptions_read,
            before_batch=_subscriptions_current, **kwargs,
        )
