"""The AsyncAPI 3.1 document of the bus's topics, served at `/asyncapi.json`.

    document = asyncapi_document(app_id="samband", subscriber_topic_prefix="subscriber.")

Made from the topic table (bus/topics.py: one channel per topic, its key, value and writer) and
the schema catalog (each event type's Avro schema as a message payload, in the Avro schema
format, so Kafka-side tools read the same schemas the bus's registry serves). The HTTP-ingest
profile of CloudEvents and the Kafka subscribers' topics (CloudEvents Kafka binding, binary
mode) are channels too. tests/operations/test_worker_documents.py validates it with the
AsyncAPI project's own parser.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from bus.topics import DEADLETTER, EVENTS, INGEST, TABLE, Topic
from connectors.dead_letters import PREFIX as DEAD_LETTER_HEADER
from connectors.http_ingest.openapi import event_schema
from connectors.kafka_sink.sink import CE_ATTRIBUTES
from schemas.catalog import EVENTS_NAMESPACE, REFERENCE_NAMESPACE, UNKNOWN_EVENT, catalog
from schemas.json_schema import DataSchemas

AVRO = "application/vnd.apache.avro+json;version=1.9.0"
_EVENT_TYPES = [t for t in catalog().event_types() if t != UNKNOWN_EVENT]


def _avro_message(event_type: str, content_type: str) -> dict:
    version = catalog().current(event_type)
    return {
        "name": event_type,
        "title": f"{event_type} (schema {version.subject} v{version.version}, id {version.id})",
        "summary": version.schema.get("doc", ""),
        "contentType": content_type,
        "payload": {"schemaFormat": AVRO, "schema": version.schema},
    }


def _headers(names: dict[str, str]) -> dict:
    return {
        "type": "object",
        "properties": {name: {"type": "string", "description": text} for name, text in names.items()},
    }


_DEAD_LETTER_HEADERS = {
    f"{DEAD_LETTER_HEADER}{name}": text
    for name, text in {
        "reason": "stable reason code, e.g. `wire.truncated`",
        "message": "for people; never personal data",
        "stage": "source, ingest, route or deliver",
        "topic": "where the original was read",
        "partition": "its partition",
        "offset": "its offset",
        "event-id": "the event's id, when known",
        "event-type": "the event type, when known",
        "scrubbed": "`address` when address data was stripped before sealing",
        "time": "when it was dead-lettered (ISO 8601)",
    }.items()
} | {"samband-subscription": "the subscription, for a delivery dead letter"}

# What a Kafka subscriber's record carries in its headers: the sink's ce_* attributes, described.
_ATTRIBUTE_TEXT = {
    "specversion": "1.0",
    "id": "the event id (a purge's: the causing event's id + `-purge`)",
    "source": "the source system",
    "type": f"`{EVENTS_NAMESPACE}.<type>`, `{REFERENCE_NAMESPACE}.<type>` (about no person), or `no.samband.purge`",
    "time": "event time (RFC 3339)",
    "subject": "the subscription's own pseudonym of the person (the record key too); a reference event's: `kommuner/<day>`",
    "changekind": "new, correction or annulment",
    "correctseventid": "the event a correction or annulment changes",
    "protectionchangeid": "a purge's cause: the AddressProtectionChange that raised the grade",
    "protectionrevealedby": "a purge's cause: the event that showed the stricter grade before the change came",
    "backfill": "`true` on an event sent again by a backfill (`samband subscriptions backfill`), absent otherwise",
}
_SUBSCRIBER_HEADERS = {f"ce_{name}": _ATTRIBUTE_TEXT[name] for name in CE_ATTRIBUTES} | {
    "content-type": "application/avro",
    "samband-idempotency-key": "the same on every retry, after a crash and on replay",
    "traceparent": "W3C trace context",
}


def _channel(topic: Topic, app_id: str, messages: dict[str, Any]) -> dict:
    return {
        "address": topic.name(app_id),
        "title": topic.name(app_id),
        "description": f"Written by {topic.writer}. Key: {topic.key}. Value: {topic.value}."
        + (f" {topic.notes[0].upper()}{topic.notes[1:]}." if topic.notes else ""),
        "messages": messages,
        "bindings": {
            "kafka": {
                "topic": topic.name(app_id),
                "partitions": topic.partition_count(),
                "topicConfiguration": {"cleanup.policy": topic.cleanup.split(",")},
                "bindingVersion": "0.5.0",
            }
        },
    }


def _kafka_key(description: str) -> dict:
    return {"kafka": {"key": {"type": "string", "description": description}, "bindingVersion": "0.5.0"}}


def _described(topic: Topic) -> dict:
    """A message for a topic whose value the table describes in words (the bus's own state)."""
    return {
        "name": topic.attr,
        "summary": topic.value,
        "payload": {"type": ["object", "string", "null"], "description": topic.value},
        "bindings": _kafka_key(topic.key),
    }


@cache
def asyncapi_document(app_id: str = "samband", subscriber_topic_prefix: str = "subscriber.") -> dict:
    data = DataSchemas("#/components/schemas/")
    messages: dict[str, Any] = {}
    for event_type in _EVENT_TYPES:
        messages[f"{event_type}Avro"] = {
            **_avro_message(event_type, "application/vnd.samband.avro"),
            "description": "Confluent wire format: byte 0, the schema id (4 bytes, big-endian), then Avro binary.",
            "bindings": _kafka_key("person pseudonym"),
        }
        messages[f"{event_type}CloudEvent"] = {
            "name": f"{event_type}CloudEvent",
            "title": f"{event_type} as a CloudEvents 1.0 JSON object (structured mode)",
            "contentType": "application/cloudevents+json",
            "payload": event_schema(event_type, data.data(event_type)),  # as HTTP ingest takes it
            "bindings": _kafka_key("person pseudonym"),
        }
    data.named("no.samband.common.AddressProtection")  # the attributes' own types
    data.named("no.samband.common.ChangeKind")
    messages["DeadLetter"] = {
        "name": "DeadLetter",
        "summary": DEADLETTER.value,
        "contentType": "application/octet-stream",
        "payload": {"type": "string", "contentEncoding": "binary", "description": DEADLETTER.value},
        "headers": _headers(_DEAD_LETTER_HEADERS),
        "bindings": _kafka_key(DEADLETTER.key),
    }
    messages["SubscriberRecord"] = {
        "name": "SubscriberRecord",
        "title": "A delivery to a Kafka subscriber (CloudEvents Kafka protocol binding, binary mode)",
        "contentType": "application/avro",
        "summary": "Confluent wire-format Avro of the subscription's projection of `data` (its schema id in the "
        "bus's registry); a purge is a no.samband.delivery.Purge record.",
        "payload": {"type": "string", "contentEncoding": "binary"},
        "headers": _headers(_SUBSCRIBER_HEADERS),
        "bindings": _kafka_key("the subscription's pseudonym of the person (a reference event: `kommuner/<day>`)"),
    }

    channels: dict[str, Any] = {}
    for topic in TABLE:
        if topic is INGEST:
            chosen = {n: m for n, m in messages.items() if n.endswith(("Avro", "CloudEvent"))}
        elif topic is EVENTS:
            chosen = {n: m for n, m in messages.items() if n.endswith("Avro")}
        elif topic is DEADLETTER:
            chosen = {"DeadLetter": messages["DeadLetter"]}
        else:
            messages[topic.attr] = _described(topic)
            chosen = {topic.attr: messages[topic.attr]}
        channels[topic.attr] = _channel(topic, app_id, {n: {"$ref": f"#/components/messages/{n}"} for n in chosen})
    channels["subscriber"] = {
        "address": subscriber_topic_prefix + "{subscription}",
        "title": "A Kafka subscriber's own topic",
        "description": "One topic per subscription of delivery kind `kafka` (SAMBAND_SUBSCRIBER_TOPIC_PREFIX + its "
        "id); its principal may read only this topic.",
        "parameters": {"subscription": {"description": "the subscription id"}},
        "messages": {"SubscriberRecord": {"$ref": "#/components/messages/SubscriberRecord"}},
    }

    operations = {
        "publishToIngest": {
            "action": "receive",
            "title": "Source connectors and municipal systems publish events",
            "channel": {"$ref": "#/channels/ingest"},
            "messages": [{"$ref": f"#/channels/ingest/messages/{n}"} for n in channels["ingest"]["messages"]],
        },
        "canonicalEvents": {
            "action": "send",
            "title": "Validated, normalised events, one person's in order",
            "channel": {"$ref": "#/channels/events"},
        },
        "deliverToKafkaSubscriber": {
            "action": "send",
            "title": "Deliveries to a Kafka subscriber, projected and protected",
            "channel": {"$ref": "#/channels/subscriber"},
        },
    }
    for topic in TABLE:
        if topic not in (INGEST, EVENTS):
            operations[f"write_{topic.attr}"] = {"action": "send", "channel": {"$ref": f"#/channels/{topic.attr}"}}

    return {
        "asyncapi": "3.1.0",
        "id": f"urn:samband:{app_id}",
        "info": {
            "title": "Samband topics",
            "version": "1",
            "description": "The Kafka topics of a Samband bus (app id `" + app_id + "`): citizen life events keyed "
            "by person pseudonym, in order per person. Values hold personal data: read access is for the bus's "
            "own principals and the operators.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "the cluster in SAMBAND_KAFKA_BOOTSTRAP_SERVERS",
                "variables": {"bootstrap": {"default": "127.0.0.1:9092"}},
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": data.components},
    }
