"""The demo's receivers, fed by the bus's own webhook sender and a real Kafka topic."""

from __future__ import annotations

import asyncio
import json

from aiokafka import AIOKafkaProducer

from agents.demo.receivers import TopicReceiver, WebhookReceiver
from connectors.webhook.config import WebhookConfig
from connectors.webhook.network import AllowList
from connectors.webhook.secrets import new_secret
from connectors.webhook.sender import WebhookSender


def _event(event_id: str, event_type: str = "no.samband.events.Death") -> dict:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "urn:test",
        "type": event_type,
        "subject": "ab" * 16,
        "time": "2024-05-01T00:00:00+00:00",
        "datacontenttype": "application/json",
        "data": {"deathDate": "2024-05-01"},
    }


async def _sender(url: str, secret: str, monkeypatch) -> WebhookSender:
    monkeypatch.setenv("DEMO_TEST_SECRET", secret)
    return WebhookSender(WebhookConfig(url=url, secret_ref="env:DEMO_TEST_SECRET"), AllowList.parse("127.0.0.0/8"))


async def test_signed_events_are_recorded_once_and_forged_ones_refused(monkeypatch):
    secret = new_secret()
    receiver = WebhookReceiver("alta-bibliotek", secret)
    url = await receiver.start()
    good, forged = await _sender(url, secret, monkeypatch), None
    try:
        assert (await good.send(_event("e1"), "e1.alta")).status == "delivered"
        assert (await good.send(_event("e1"), "e1.alta")).status == "delivered"  # a retry: same id
        monkeypatch.setenv("DEMO_TEST_SECRET", new_secret())
        forged = WebhookSender(
            WebhookConfig(url=url, secret_ref="env:DEMO_TEST_SECRET"), AllowList.parse("127.0.0.0/8")
        )
        assert (await forged.send(_event("e2"), "e2.alta")).http_status == 401
    finally:
        await good.close()
        if forged:
            await forged.close()
        await receiver.stop()
    recording = receiver.recording
    assert [(e.event_id, e.event_type, e.data) for e in recording.events] == [
        ("e1", "Death", {"deathDate": "2024-05-01"})
    ]
    assert (recording.counts.requests, recording.counts.duplicates, recording.counts.bad_signature) == (3, 1, 1)


async def test_the_misbehaving_receiver_answers_500_during_its_outage_then_recovers(monkeypatch):
    now = [100.0]
    secret = new_secret()
    receiver = WebhookReceiver("trondheim-pleie-og-omsorg", secret, outage_seconds=10, clock=lambda: now[0])
    sender = await _sender(await receiver.start(), secret, monkeypatch)
    try:
        handshake = _event("v1", "no.samband.subscription.validation")
        assert (await sender.send(handshake, "validation.v1")).status == "delivered"  # set up fine before the outage
        first = await sender.send(_event("e1"), "e1.t")
        now[0] += 9.9
        still_down = await sender.send(_event("e1"), "e1.t")
        now[0] += 0.2
        recovered = await sender.send(_event("e1"), "e1.t")
    finally:
        await sender.close()
        await receiver.stop()
    assert (first.http_status, still_down.http_status, recovered.http_status) == (500, 500, 204)
    assert first.status == "retry"
    assert receiver.recording.verified and [e.event_id for e in receiver.recording.events] == ["e1"]
    assert receiver.recording.counts.refused == 2


def _kafka_record(topic: str, event_id: str):
    """The record the bus's Kafka sink writes for a Death delivery (connectors.kafka_sink)."""
    import structlog

    from connectors.api import Context, DeadLetters, Output, SinkRecord, StateStore, Subscriber
    from connectors.kafka_sink.sink import KafkaSink
    from schemas.catalog import catalog
    from schemas.registry import CatalogRegistry

    extras = {"topic_writer": None, "schema_registry": CatalogRegistry(catalog()), "subscriber_topic_prefix": ""}
    subscriber = Subscriber(topic, FIELDS)  # with no prefix, the sink's topic is the subscription id
    context = Context(topic, Output(), DeadLetters(), StateStore(), structlog.get_logger(), extras, subscriber)
    sink = KafkaSink(KafkaSink.parse_config({}), context)
    delivery = {
        "idempotency_key": f"{event_id}.stavanger-gebyr",
        "person": "ab" * 16,
        "event": _event(event_id),
        "kind": "event",
    }
    return sink.encode(SinkRecord(None, json.dumps(delivery).encode()))


FIELDS = {"Death": ["deathDate"]}


async def test_the_kafka_native_system_records_what_lands_on_its_topic(kafka_bootstrap, new_topic):
    topic = await new_topic(prefix="demo-receiver")
    receiver = TopicReceiver("stavanger-gebyr", kafka_bootstrap, topic, FIELDS)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for event_id in ("e1", "e2"):
            key, value, headers = _kafka_record(topic, event_id)
            await producer.send_and_wait(topic, value, key=key, headers=headers)
        await receiver.start()
        async with asyncio.timeout(30):
            while len(receiver.recording.events) < 2:
                await asyncio.sleep(0.1)  # poll interval on the in-memory recording, bounded by the timeout
    finally:
        await producer.stop()
        await receiver.stop()
    assert [e.event_id for e in receiver.recording.events] == ["e1", "e2"]
    assert (
        receiver.recording.events[0].event_type == "Death"
        and str(receiver.recording.events[0].data["deathDate"]) == "2024-05-01"
    )
