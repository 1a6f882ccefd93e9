"""The ingest agent: `samband-ingest` -> validated, deduplicated, canonical `samband-events`.

Per batch of up to SAMBAND_BATCH_SIZE messages (Faust's per-event cost is too high for
reform-day bursts, see docs/routing.md): each message becomes a canonical event
(agents/routing/canonical.py) or a dead letter with its reason code; the sends are queued
without waiting and their futures awaited once per batch, before the batch is acknowledged.
Faust flushes the producer before it commits offsets, so a crash loses nothing: an event
whose offset was not committed is read again (and then caught by deduplication only if the
first pass already wrote its id to the table's changelog).

Deduplication: table `ingest-seen-ids`, event id -> first-seen time (epoch seconds),
partitioned like the ingest topic (a duplicate has the same key, so it lands in the same
partition). An id is remembered for SAMBAND_DEDUP_RETENTION_HOURS (default 7 days): entries
this worker added are evicted from memory and tombstoned after that time, and the
changelog is `compact,delete` with the same retention, so a restart recovers no older ids.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque

import structlog

from agents.app import app
from agents.config import DEV_PSEUDONYM_KEY, get_settings
from agents.routing.canonical import Canonicaliser, Rejected
from agents.routing.protection import is_strict, scrub_address
from agents.routing.tables import TableWrites
from agents.routing.topics import bus_topics
from connectors.dead_letters import DeadLetter
from schemas.codec import Codec
from schemas.pseudonym import pseudonym
from schemas.registry import registry_from_settings

log = structlog.get_logger(__name__)

settings = get_settings()
topics = bus_topics(app.conf.id)
RETENTION_SECONDS = settings.dedup_retention_hours * 3600

ingest_topic = app.topic(topics.ingest, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
events_topic = app.topic(topics.events, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
deadletter_topic = app.topic(topics.deadletter, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

seen_ids = app.Table(
    "ingest-seen-ids",
    key_type=str,
    value_type=int,
    extra_topic_configs={"cleanup.policy": "compact,delete", "retention.ms": str(int(RETENTION_SECONDS * 1000))},
)


class Ingest:
    """The per-batch logic of the agent, holding what it caches between batches."""

    def __init__(self) -> None:
        self.codec = Codec(registry_from_settings(settings))
        self.canonicaliser = Canonicaliser(self.codec, settings.ingest_max_bytes)
        self.key = settings.pseudonym_key.encode()
        # Per table partition, (first seen, event id) in arrival order: what to evict when.
        self.remembered: dict[int, deque[tuple[float, str]]] = defaultdict(deque)
        self.writes = TableWrites()

    async def handle(self, message, now: float) -> asyncio.Future:
        """Queue the output of one message; returns the future of its delivery to Kafka."""
        try:
            event = self.canonicaliser.canonical(message.value)
        except Rejected as rejected:
            return await self.dead_letter(message, rejected)
        first_seen = seen_ids.data.get(event.event_id)
        if first_seen is not None and now - first_seen < RETENTION_SECONDS:
            return await self.dead_letter(message, Rejected("event.duplicate", "event id already ingested", event.record))
        self.writes.set(seen_ids, message.partition, event.event_id, int(now))
        self.remembered[message.partition].append((now, event.event_id))
        person = pseudonym(event.record["envelope"]["person"], self.key)
        return await app.producer.send(topics.events, person.encode(), event.value, None, None, _headers(message))

    async def dead_letter(self, message, rejected: Rejected) -> asyncio.Future:
        record = rejected.record
        value, headers = message.value, _headers(message)
        envelope = record["envelope"] if record else {}
        if record and is_strict(envelope.get("addressProtection")):
            # Not even a dead letter may carry a strengt fortrolig person's address.
            event_type = envelope["type"].rpartition(".")[2]
            value = self.codec.encode(scrub_address(event_type, record), self.codec.current_id(event_type))
            headers.append(("samband-dlq-scrubbed", b"address"))
        letter = DeadLetter(
            rejected.reason, str(rejected), "ingest", message.topic, message.partition, message.offset
        )
        log.info("dead_letter", reason=rejected.reason, event_id=envelope.get("id"), offset=message.offset)
        return await app.producer.send(topics.deadletter, message.key, value, None, None, letter.headers(headers))

    def evict_expired(self, now: float) -> None:
        for partition, remembered in self.remembered.items():
            while remembered and now - remembered[0][0] >= RETENTION_SECONDS:
                _, event_id = remembered.popleft()
                if seen_ids.data.get(event_id, now) <= now - RETENTION_SECONDS:
                    self.writes.delete(seen_ids, partition, event_id)


def _headers(message) -> list[tuple[str, bytes]]:
    headers = message.headers or []
    return list(headers.items() if isinstance(headers, dict) else headers)


@app.agent(ingest_topic)
async def ingest(stream):
    if settings.pseudonym_key == DEV_PSEUDONYM_KEY:
        log.warning("pseudonym_key_is_development_default", setting="SAMBAND_PSEUDONYM_KEY")
    for topic in (events_topic, deadletter_topic):
        await topic.maybe_declare()
    logic = Ingest()
    async for batch in stream.take_events(settings.batch_size, within=settings.batch_within_seconds):
        now = time.time()
        sends = [await logic.handle(event.message, now) for event in batch]
        await asyncio.gather(*sends)
        logic.evict_expired(now)
        logic.writes.flush()  # only now: an id is "seen" once its event is in Kafka
        log.debug("ingested_batch", events=len(batch))
