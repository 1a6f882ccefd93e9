"""Kafka delivery in a real worker: a subscription's own topic, read as a Kafka-native subscriber would,
with confluent-kafka's Consumer and AvroDeserializer against the bus's schema registry endpoint."""

from __future__ import annotations

import asyncio
import time
from datetime import date

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from delivery_bus import running_bus
from delivery_fixtures import delivery

FIELDS = {"Move": ["envelope.person", "movedDate", "scope", "newAddress"]}
PERSONS, PER_PERSON = 4, 5
TRACE = [("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]


def _move(sub: str, person: int, seq: int) -> dict:
    pseudonym = f"{person:032x}"
    record = delivery(sub, pseudonym, f"kev-{person}-{seq}", seq)
    # What the router writes for FIELDS: the projected data; newAddress withheld (a protected person).
    record["event"]["data"] = {
        "envelope": {"person": pseudonym},
        "movedDate": f"2024-03-{seq + 1:02d}",
        "scope": "withinKommune",
    }
    return record


def _purge(sub: str, person: int) -> dict:
    pseudonym = f"{person:032x}"
    record = delivery(sub, pseudonym, f"kev-{person}-protect-purge")
    record["event"].update(type="no.samband.purge", data={"delete": "address"})
    record["kind"] = "purge"
    return record


def _consume(bootstrap: str, topic: str, registry_url: str, expected: int, timeout: float) -> list[tuple]:
    """(key, decoded value, headers) of the first `expected` records of `topic`, as a subscriber reads them."""
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    got, deadline = [], time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            value = deserialize(message.value(), SerializationContext(topic, MessageField.VALUE))
            got.append((message.key().decode(), value, {k: v.decode() for k, v in message.headers() or []}))
    finally:
        consumer.close()
    return got


async def test_kafka_subscription_gets_its_projected_events_in_order_as_confluent_avro(kafka_bootstrap, tmp_path):
    async with running_bus(kafka_bootstrap, tmp_path) as bus:
        topic = bus.subscriber_topic("kafka-sub")
        await bus.subscribe_kafka("kafka-sub", FIELDS)
        records = [_move("kafka-sub", p, n) for n in range(PER_PERSON) for p in range(PERSONS)] + [
            _purge("kafka-sub", 0)
        ]
        await bus.send(records, headers=TRACE)
        await bus.send([records[0]], headers=TRACE)  # the same delivery again (as a replay would): a duplicate
        got = await asyncio.to_thread(_consume, kafka_bootstrap, topic, bus.registry_url, len(records) + 1, 90)

    assert len(got) == len(records) + 1, f"{len(got)} records on the subscriber's topic"
    keys = [headers["samband-idempotency-key"] for _, _, headers in got]
    assert sorted(set(keys)) == sorted(r["idempotency_key"] for r in records)
    assert keys.count(records[0]["idempotency_key"]) == 2  # the duplicate kept its idempotency key
    by_person: dict[str, list[date]] = {}
    person_of: dict[str, str] = {}  # the key is the subscription's own pseudonym: one per person
    for key, value, headers in got:
        assert headers["traceparent"].split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"  # the trace goes on
        assert headers["content-type"] == "application/avro" and headers["ce_subject"] == key
        if headers["ce_type"] == "no.samband.purge":
            assert value == {"delete": "address"}
            purge_key = key
            continue
        assert set(value) == {"envelope", "movedDate", "scope", "newAddress"} and value["newAddress"] is None
        assert person_of.setdefault(key, value["envelope"]["person"]) == value["envelope"]["person"]
        assert key != value["envelope"]["person"]  # never the bus's own pseudonym
        by_person.setdefault(key, []).append(value["movedDate"])
    for person, dates in by_person.items():
        first = list(dict.fromkeys(dates))
        assert first == [date(2024, 3, n + 1) for n in range(PER_PERSON)], f"person {person[:8]} in order {first}"
    # The purge was routed after person 0's events. It goes before those still waiting in the person's
    # queue (they leave projected under the new grade), never before the one already on its way.
    assert person_of[purge_key] == f"{0:032x}"  # the purge has person 0's key
    person0 = [h["ce_id"] for k, _, h in got if k == purge_key]
    assert person0[0] == "kev-0-0" and "kev-0-protect-purge" in person0


async def test_a_strengt_fortrolig_persons_move_reaches_a_kafka_subscriber_without_what_reveals_the_kommune(
    kafka_bootstrap, tmp_path
):
    """Granted source, scope, cause and the address, the subscriber's schema lets each be absent: the
    record encodes without them, and is not dead-lettered for missing them."""
    fields = {"Move": ["envelope.person", "envelope.source", "movedDate", "scope", "cause", "newAddress"]}
    async with running_bus(kafka_bootstrap, tmp_path) as bus:
        topic = bus.subscriber_topic("kafka-strict")
        await bus.put_subscription(
            {"id": "kafka-strict", "kommuner": "all", "fields": fields, "delivery": {"kind": "kafka"}}
        )
        purge = _purge("kafka-strict", 7)
        purge["protection"] = "strengtFortrolig"  # the grade the router's purge carries to the delivery stage
        move = _move("kafka-strict", 7, 0)
        move["event"]["source"] = "urn:no:kommune:4601:folkeregister"
        move["event"]["data"] |= {  # as routed before the change: everything granted
            "envelope": {"person": f"{7:032x}", "source": "urn:no:kommune:4601:folkeregister"},
            "cause": "relocation",
            "newAddress": {
                "kommunenummer": "4601",
                "streetName": "Hemmeliggata",
                "houseNumber": 7,
                "houseLetter": None,
                "unitNumber": None,
                "postalCode": "5003",
                "postalTown": "Bergen",
            },
        }
        await bus.send([purge, move])
        got = await asyncio.to_thread(_consume, kafka_bootstrap, topic, bus.registry_url, 2, 90)

    assert [h["ce_type"] for _, _, h in got] == ["no.samband.purge", move["event"]["type"]], got
    _, value, headers = got[1]
    assert value["envelope"]["source"] is None and value["scope"] is None and value["cause"] is None
    assert value["newAddress"] is None and value["movedDate"] == date(2024, 3, 1)
    assert "4601" not in headers["ce_source"]
