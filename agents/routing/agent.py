"""The router agent: `samband-events` -> one `samband-deliveries` record per entitled subscription.

Thin around agents/routing/router.py. State, in Faust tables partitioned like
`samband-events` (by person pseudonym), so a person's state lives where their events are:
- `router-persons`: pseudonym -> PersonState JSON (protection, birth date, who received data);
- `router-records`: event id -> JSON list of the subscriptions sent the event (the routing
  record that corrections and annulments follow). A correction is about the same person,
  so it finds the record in its own partition.

Batches as the ingest agent does: sends queued without waiting, futures awaited per batch,
offsets committed by Faust only after its producer is flushed (crash-safe, at-least-once;
the idempotency key `<event id>.<subscription id>` makes a repeat harmless downstream).
No event is routed before every subscription written before the start has been read.
"""

from __future__ import annotations

import asyncio
import json

import structlog

from agents.app import app
from agents.config import bootstrap_servers, get_settings
from agents.routing.index import RoutingIndex
from agents.routing.protection import is_strict, scrub_address
from agents.routing.router import PersonState, Router
from agents.routing.tables import TableWrites
from agents.routing.topics import bus_topics
from agents.subscriptions.store import SubscriptionFollower
from connectors.dead_letters import DeadLetter
from schemas.codec import Codec, WireFormatError
from schemas.registry import registry_from_settings

log = structlog.get_logger(__name__)

settings = get_settings()
topics = bus_topics(app.conf.id)

events_topic = app.topic(topics.events, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
deliveries_topic = app.topic(topics.deliveries, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
deadletter_topic = app.topic(topics.deadletter, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

persons = app.Table("router-persons", key_type=str, value_type=bytes)
routing_records = app.Table("router-records", key_type=str, value_type=bytes)

index = RoutingIndex()
follower = SubscriptionFollower(bootstrap_servers(), topics.subscriptions, index.put, index.remove)


@app.task
async def follow_subscriptions() -> None:
    await follower.run()


class Route:
    def __init__(self) -> None:
        self.codec = Codec(registry_from_settings(settings))
        self.router = Router(index)
        self.writes = TableWrites()

    async def handle(self, message) -> list[asyncio.Future]:
        try:
            record = self.codec.decode(message.value)
        except WireFormatError as exc:
            return [await self.dead_letter(message, exc.reason, str(exc))]
        envelope = record["envelope"]
        event_type = envelope["type"].rpartition(".")[2]
        person = message.key.decode()
        state = PersonState.from_json(persons.data.get(person))
        original = None
        if envelope["correctsEventId"]:
            known = routing_records.data.get(envelope["correctsEventId"])
            original = json.loads(known) if known is not None else None
        result = self.router.route(event_type, record, person, state, original)

        sends = [await app.producer.send(topics.deliveries, d.key, d.value, None, None, _headers(message))
                 for d in result.deliveries]
        if result.state != state:
            self.writes.set(persons, message.partition, person, result.state.to_json())
        if result.unknown_original:
            value = message.value
            if is_strict(result.state.protection):
                value = self.codec.encode(scrub_address(event_type, record), self.codec.current_id(event_type))
            sends.append(await self.dead_letter(message, "relation.unknown_corrected_event",
                                                f"{event_type} {envelope['changeKind']} names an event the bus has not routed",
                                                value=value, event_id=envelope["id"]))
        else:
            self.writes.set(routing_records, message.partition, envelope["id"], json.dumps(result.recipients).encode())
        return sends

    async def dead_letter(self, message, reason: str, text: str, value: bytes | None = None,
                          event_id: str | None = None) -> asyncio.Future:
        letter = DeadLetter(reason, text, "route", message.topic, message.partition, message.offset)
        headers = _headers(message)
        if value is not None and value != message.value:
            headers.append(("samband-dlq-scrubbed", b"address"))
        log.info("dead_letter", reason=reason, event_id=event_id, offset=message.offset)
        return await app.producer.send(topics.deadletter, message.key, value if value is not None else message.value,
                                       None, None, letter.headers(headers))


def _headers(message) -> list[tuple[str, bytes]]:
    headers = message.headers or []
    return list(headers.items() if isinstance(headers, dict) else headers)


@app.agent(events_topic)
async def route(stream):
    for topic in (deliveries_topic, deadletter_topic):
        await topic.maybe_declare()
    await follower.caught_up.wait()
    log.info("router_ready", subscriptions=len(index))
    logic = Route()
    async for batch in stream.take_events(settings.batch_size, within=settings.batch_within_seconds):
        sends = []
        for event in batch:
            sends += await logic.handle(event.message)
        await asyncio.gather(*sends)
        logic.writes.flush()  # state only after the deliveries it describes are in Kafka
