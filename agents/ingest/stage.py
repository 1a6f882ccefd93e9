"""Ingest: `samband-ingest` -> validated, deduplicated, canonical `samband-events`.

Read in batches by a `BatchService` (bus/batches.py, consumer group
`<app id>-ingest`): Faust's per-event stream cost is too high for reform-day bursts (see
docs/routing.md). Each message becomes a canonical event (agents/ingest/canonical.py) or a
dead letter with its reason code; the batch's outputs are acknowledged before its state
changes are written and before its offsets are committed, so a crash loses nothing: an event
whose offset was not committed is read again (and then caught by deduplication only if the
first pass already wrote its id to the changelog).

Trace context and timing: every event written on carries a W3C `traceparent`, a child span of
the incoming record's or the root of a new trace when it had none (or an invalid one), and
`samband-ingested-at` (epoch seconds, ASCII, ms precision) from which the delivery stage
measures the end-to-end latency. A dead letter keeps the input record's headers, with the
new trace's `traceparent` when the record had no valid one. Each dead letter counts in
`samband_validation_failures_total` by its reason; its log line carries the event id, topic,
partition, offset and trace id, never the event's data.

Deduplication: an event whose id was ingested before is dropped, counted in
`samband_duplicate_events_total` and logged (`ingest.duplicate`, with its event id); it is
not a dead letter. Event id -> first-seen time (epoch seconds, ASCII), per partition of the
ingest topic (a duplicate has the same key, so it lands in the same partition), durable in
the compacted topic `<app id>-ingest-seen-ids`, and kept on disk (RocksDB, bus/store.py): at
national scale a week of ids is millions, more than a worker's memory should hold. An id counts
for SAMBAND_DEDUP_RETENTION_HOURS (default 7 days): an older entry is ignored where it is found
and not read back at the next start or assignment; the topic is `compact,delete` with the same
retention, so the broker deletes them too. Until then they stay on disk (some 60 bytes an event).
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import structlog
from aiokafka import ConsumerRecord

from agents import metrics, tracing
from agents.app import prepare_collector
from agents.config import Settings, dead_letter_key
from agents.ingest.canonical import Canonicaliser, Rejected
from agents.stage_runtime import StageRuntime, stage_group
from bus.batches import BatchService, Write
from bus.state import PartitionedState
from bus.store import DiskStore
from bus.topics import DEADLETTER, EVENTS, INGEST, INGEST_SEEN_IDS, TopicNames
from connectors.dead_letters import DeadLetter, DeadLetterSeal
from schemas import json_text
from schemas.codec import Codec
from schemas.protection import is_strict, scrub_address
from schemas.pseudonym import pseudonym
from schemas.registry import registry_from_settings
from schemas.scrub import scrub_cloudevent

log = structlog.get_logger(__name__)

INGESTED_AT = "samband-ingested-at"


class Ingest:
    """The per-message logic, holding the dedup state and what it caches between batches."""

    def __init__(self, settings: Settings, topics: TopicNames) -> None:
        self.topics = topics
        self.retention_seconds = settings.dedup_retention_hours * 3600
        self.codec = Codec(registry_from_settings(settings))
        self.canonicaliser = Canonicaliser(self.codec, settings.ingest_max_bytes, settings.ingest_ignore_unknown)
        self.key = settings.pseudonym_key.encode()
        self.seal = DeadLetterSeal(dead_letter_key(settings))
        self.seen = PartitionedState(
            topics.ingest_seen_ids,
            INGEST_SEEN_IDS.configs(retention_ms=int(self.retention_seconds * 1000)),
            check=int,
            disk=DiskStore.open(
                Path(settings.data_dir),
                topics.ingest_seen_ids,
                settings.state_cache_mb,
                settings.state_checkpoint_hours,
            ),
            expired=lambda first_seen: time.time() - int(first_seen) >= self.retention_seconds,
        )
        self.states = [self.seen]
        self.now = time.time()

    def handle_batch(self, messages: list[ConsumerRecord], outputs: list[Write]) -> None:
        self.now = time.time()
        for message in messages:
            self.handle(message, outputs)

    def handle(self, message: ConsumerRecord, outputs: list[Write]) -> None:
        parent = tracing.from_kafka_headers(message.headers)
        span = tracing.continue_trace(parent)
        try:
            event = self.canonicaliser.canonical(message.value)
        except Rejected as rejected:
            outputs.append(self.dead_letter(message, rejected, parent, span))
            return
        first_seen = self.seen.get(message.partition, event.event_id)
        if first_seen is not None and self.now - int(first_seen) < self.retention_seconds:
            # A source retrying after an unanswered write sends the same event again: expected of
            # at-least-once delivery, so counted and logged, not a dead letter.
            metrics.duplicate_dropped()
            log.info(
                "ingest.duplicate",
                event_id=event.event_id,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                trace_id=span.trace_id,
            )
            return
        self.seen.set(message.partition, event.event_id, b"%d" % self.now)
        person = pseudonym(event.record["envelope"]["person"], self.key)
        headers = [
            h for h in tracing.with_kafka_header(message.headers, span) if h[0] != INGESTED_AT
        ]  # re-ingested: now
        headers.append((INGESTED_AT, b"%.3f" % self.now))
        key = person.encode()
        if message.key == key:  # keyed as sources must key it (schemas/ingest_key.py): the same partition, no hashing
            outputs.append((self.topics.events, key, event.value, headers, message.partition))
        else:
            outputs.append((self.topics.events, key, event.value, headers))

    def dead_letter(
        self, message: ConsumerRecord, rejected: Rejected, parent: tracing.TraceParent | None, span: tracing.TraceParent
    ) -> Write:
        """The input record as it came (its own trace context, or the trace ingest started for it), with the reason."""
        record = rejected.record
        value, scrubbed = message.value, None
        headers = list(message.headers) if parent is not None else tracing.with_kafka_header(message.headers, span)
        envelope = record["envelope"] if record else {}
        # Not even a sealed dead letter keeps a strengt fortrolig person's address: scrubbed as far
        # as the input could be read, a decoded record or a CloudEvent that parsed as JSON.
        if record and is_strict(envelope.get("addressProtection")):
            event_type = envelope["type"].rpartition(".")[2]
            value, scrubbed = (
                self.codec.encode(scrub_address(event_type, record), self.codec.current_id(event_type)),
                "address",
            )
        elif not record and value[:1] == b"{" and (partial := _partly_read(value)) is not None:
            value, scrubbed = orjson.dumps(partial), "address"
            envelope = {"id": partial.get("id")} if isinstance(partial.get("id"), str) else {}
        letter = DeadLetter(
            rejected.reason,
            str(rejected),
            "ingest",
            message.topic,
            message.partition,
            message.offset,
            event_id=envelope.get("id"),
            event_type=envelope.get("type"),
            scrubbed=scrubbed,
        )
        metrics.validation_failed(rejected.reason)
        log.info(
            "dead_letter",
            reason=rejected.reason,
            event_id=envelope.get("id"),
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            trace_id=span.trace_id,
        )
        return self.topics.deadletter, message.key, self.seal.seal(value), letter.headers(headers)

    def end_batch(self) -> None:
        pass  # nothing is evicted: an expired id is ignored where it is found, and dropped at the next recovery

    def due(self) -> bool:
        return False

    def recovered(self, partitions: set[int]) -> None:
        pass


def _partly_read(value: bytes) -> dict | None:
    """The scrubbed CloudEvent of a message that parses as JSON but failed a later check, if it says
    its person is strengt fortrolig (schemas/scrub.py)."""
    try:
        return scrub_cloudevent(json_text.loads(value))
    except ValueError:
        return None


class IngestService(BatchService):
    """The ingest stage: its batch consumer, with `Ingest` as its logic."""

    async def on_started(self) -> None:
        prepare_collector()  # the worker's modules and app, out of the collector's way (as the other stages)


def build(settings: Settings, runtime: StageRuntime) -> IngestService:
    topics = runtime.topics
    return IngestService(
        **runtime.batch_settings(),
        source=topics.ingest,
        group=stage_group(settings.app_id, "ingest"),
        outputs=[topics.events, topics.deadletter],
        topic_configs=runtime.configs(INGEST, EVENTS, DEADLETTER),
        logic=lambda: Ingest(settings, topics),
    )
