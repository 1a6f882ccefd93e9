"""The Kafka sink: each delivery record becomes one Avro record on the subscriber's own topic.

    sink = KafkaSink(config, context)   # context.extras: "topic_writer", "ensure_topic",
                                        # "schema_registry", "subscriber_topic_prefix"
    outcomes = await sink.write(batch)  # one Outcome per SinkRecord, in order

The record (CloudEvents Kafka protocol binding, binary mode, docs/delivery.md):
- key: the event's `subject`, the subscription's own pseudonym of the person (a reference event's own);
- value: Confluent wire-format Avro of the projected `data`, written with the subscription's
  projection schema (`schemas.catalog.Catalog.projection_json`), whose id the bus's schema
  registry serves; a purge is a `no.samband.delivery.Purge` record;
- headers: `ce_*` context attributes, `content-type: application/avro`,
  `samband-idempotency-key` (the webhook-id of a webhook delivery: the same on every retry,
  after a crash and on replay) and `traceparent`.

The writer (`TopicWriter`) returns once the broker has acknowledged (acks=all).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence

import structlog

from connectors.api import Context, Outcome, Sink, SinkRecord
from connectors.kafka_sink.avro_record import PURGE_SCHEMA, RecordError, to_avro
from connectors.kafka_sink.config import KafkaSinkConfig, subscriber_topic
from schemas.catalog import CatalogError, catalog
from schemas.codec import Codec
from schemas.protection import withholdable

MALFORMED = "delivery.malformed"
TIMEOUT = "kafka.timeout"
UNAVAILABLE = "kafka.unavailable"
PURGE_TYPE = "no.samband.purge"
IDEMPOTENCY_HEADER = "samband-idempotency-key"
# CloudEvents attributes carried as ce_* headers (data travels as the value).
CE_ATTRIBUTES = ("specversion", "id", "source", "type", "time", "subject", "changekind", "correctseventid",
               "protectionchangeid", "protectionrevealedby", "backfill")  # fmt: skip


# (topic, key, value, headers): returns once the record is durable (acks=all), raises if it is not.
TopicWriter = Callable[[str, bytes | None, bytes, list[tuple[str, bytes]]], Awaitable[None]]


async def write_acknowledged(
    writer: TopicWriter, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]], timeout: float
) -> Outcome:
    """One record through the bus's writer: delivered once acknowledged (acks=all), else retried later."""
    try:
        async with asyncio.timeout(timeout):
            await writer(topic, key, value, headers)
    except TimeoutError:
        return Outcome.retry(TIMEOUT, f"no acknowledgement within {timeout:g} s")
    except Exception as exc:  # the broker or the topic, not the event, is at fault: try again later
        return Outcome.retry(UNAVAILABLE, type(exc).__name__)
    return Outcome.delivered()


def register_schemas(registry, topic: str, fields: dict[str, list[str]]) -> dict[str, tuple[int, dict]]:
    """(schema id, schema) per granted event type (`Move`) and for the purge notice (PURGE_TYPE),
    registered in `registry` under TopicRecordNameStrategy subjects (`<topic>-<record name>`).
    Event types or fields the catalog does not know are left out: their deliveries are rejected."""
    schemas = {PURGE_TYPE: ("no.samband.delivery.Purge", PURGE_SCHEMA)}
    for event_type, paths in fields.items():
        try:
            schemas[event_type] = (
                catalog().subject(event_type),
                absent_when_withheld(catalog().projection_json(event_type, paths), event_type),
            )
        except CatalogError:
            continue
    return {kind: (registry.add(f"{topic}-{subject}", schema), schema) for kind, (subject, schema) in schemas.items()}


def absent_when_withheld(schema: dict, event_type: str) -> dict:
    """The projection schema with every field the protection rule may withhold (schemas/protection.py)
    made nullable, default null: a protected person's record leaves them out and still encodes."""
    hidden = withholdable(event_type)

    def fields(record: dict, prefix: str) -> list[dict]:
        out = []
        for field in record["fields"]:
            kind, path = field["type"], prefix + field["name"]
            if path == "envelope" and isinstance(kind, dict):
                field = {**field, "type": {**kind, "fields": fields(kind, "envelope.")}}
            elif (
                path in hidden
                and not (isinstance(kind, list) and "null" in kind)
                and not (isinstance(kind, dict) and kind.get("type") == "array")
            ):
                field = {**field, "type": ["null", kind], "default": None}
            out.append(field)
        return out

    return {**schema, "fields": fields(schema, "")}


log = structlog.get_logger(__name__)


class KafkaSink(Sink):
    Config = KafkaSinkConfig
    description = "Confluent wire-format Avro of the projected events on the subscriber's own topic"
    config: KafkaSinkConfig
    # Many persons' heads per write, sent at once: the producer puts them in one request per
    # partition. One head per write left each delivery waiting for its own acknowledgement
    # (acks=all), which on a replicated cluster held a subscriber to a few hundred a second.
    # Bounded, as the producer is shared by every subscriber: a subscription has at most
    # max_batch x max_concurrency records in it.
    max_batch = 100

    def __init__(self, config: KafkaSinkConfig, context: Context):
        super().__init__(config, context)
        if context.subscriber is None:
            raise ValueError("the Kafka sink delivers for a subscription: the context names no subscriber")
        extras = context.extras
        self.topic = subscriber_topic(extras["subscriber_topic_prefix"], context.subscriber.id)
        self.writer: TopicWriter = extras["topic_writer"]
        self.registry = extras["schema_registry"]
        self.codec = Codec(self.registry)
        # Registered up front, so the registry serves every id this subscriber may meet, also
        # for records written before a restart of the worker.
        fields = {event_type: list(paths) for event_type, paths in context.subscriber.fields.items()}
        self._schemas = register_schemas(self.registry, self.topic, fields)

    async def start(self) -> None:
        """The bus creates the subscriber's topic when the subscription is read; if the broker cannot
        now, the writer tries again before the first record."""
        try:
            await self.context.extras["ensure_topic"](self.topic)
        except Exception as exc:  # the broker, not the subscription, is at fault
            log.warning(
                "delivery.subscriber_topic_not_created", subscription=self.context.instance, error=type(exc).__name__
            )

    def encode(self, record: SinkRecord) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """Key, value and headers of the topic record; ValueError (RecordError), KeyError or
        TypeError when the delivery record cannot be one."""
        delivery = json.loads(record.value)
        event = delivery["event"]
        kind = PURGE_TYPE if delivery.get("kind") == "purge" else event["type"].rpartition(".")[2]
        if kind not in self._schemas:
            raise RecordError(f"the subscription has no fields for event type {kind}")
        schema_id, schema = self._schemas[kind]
        value = self.codec.encode(to_avro(schema, event.get("data") or {}), schema_id)
        headers = [(f"ce_{name}", str(event[name]).encode()) for name in CE_ATTRIBUTES if event.get(name) is not None]
        headers.append(("content-type", b"application/avro"))
        headers.append((IDEMPOTENCY_HEADER, delivery["idempotency_key"].encode()))
        headers += [(k, v) for k, v in record.headers if k == "traceparent"]
        # The subject, the subscription's own pseudonym of the person: one partition per person, and no
        # key a subscriber could match against another subscriber's data (agents/delivery/egress.py).
        return delivery["event"]["subject"].encode(), value, headers

    async def write(self, batch: Sequence[SinkRecord]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._write_one(record) for record in batch)))

    async def _write_one(self, record: SinkRecord) -> Outcome:
        try:
            key, value, headers = self.encode(record)
        except RecordError as exc:  # its message names fields and types, never values
            return Outcome.rejected(MALFORMED, str(exc))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return Outcome.rejected(MALFORMED, f"delivery record does not fit its projection ({type(exc).__name__})")
        return await write_acknowledged(self.writer, self.topic, key, value, headers, self.config.timeout)
