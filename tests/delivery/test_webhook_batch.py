"""Batched webhook delivery (CloudEvents batch mode): several persons' events in one POST, signed
once over the whole body, each event with its own idempotency key; per-person order kept; a
failed batch retried, every event in it delivered later; the ledger records each event.

The receiver checks each request as a subscriber would: `standardwebhooks` verifies the batch's
signature, the `cloudevents` SDK parses each event of the array.
"""

from __future__ import annotations

import pytest
from delivery_bus import assert_in_order_per_person, running_bus
from test_delivery_flow import FAST, _wait_ledger
from webhook_receiver import BATCH_CONTENT_TYPE, VALIDATION_TYPE, Receiver, Reply

from connectors.api import ConfigError
from connectors.webhook import cloudevent
from connectors.webhook.sink import WebhookSink


@pytest.fixture(scope="module")
async def bus(kafka_bootstrap, tmp_path_factory):
    async with running_bus(kafka_bootstrap, tmp_path_factory.mktemp("webhook-batch")) as bus:
        yield bus


def test_batch_bodies_keep_order_and_size_and_an_event_too_large_goes_alone():
    events = [b'{"id":"%d"}' % i for i in range(10)] + [b"x" * 500] + [b'{"id":"z"}']
    bodies = cloudevent.batch_bodies(events, max_bytes=64)
    assert b"".join(body[1:-1].replace(b",", b"") for _, _, body in bodies) == b"".join(events)
    assert next((a, b) for a, b, _ in bodies) == (0, 5)  # 2 + 5 * 10 + 4 commas = 56; a sixth would make 67
    assert all(len(body) <= 64 for a, b, body in bodies if b - a > 1)
    assert (10, 11) in [(a, b) for a, b, _ in bodies]  # larger than max_bytes: alone
    assert [a for a, _, _ in bodies] == sorted(a for a, _, _ in bodies)


def test_batch_mode_is_structured_only_and_its_limits_are_checked():
    with pytest.raises(ConfigError, match="batch mode carries structured events"):
        WebhookSink.parse_config(
            {"url": "https://a.example/h", "secret_ref": "file:a", "mode": "binary", "batch": {"max_events": 10}}
        )
    with pytest.raises(ConfigError, match="max_events"):
        WebhookSink.parse_config({"url": "https://a.example/h", "secret_ref": "file:a", "batch": {"max_events": 0}})
    with pytest.raises(ConfigError, match="max_bytes"):
        WebhookSink.parse_config({"url": "https://a.example/h", "secret_ref": "file:a", "batch": {"max_bytes": 10}})


async def test_events_arrive_in_signed_batches_each_with_its_own_key_in_order_per_person(bus):
    receiver = Receiver(bus.secret)
    await receiver.start()
    try:
        await bus.subscribe("batch-ok", receiver.url, batch={"max_events": 20, "max_wait_ms": 200}, **FAST)
        records = bus.events_for("batch-ok", persons=40, per_person=3)
        traceparent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        await bus.send(records, headers=[("traceparent", traceparent)])
        await bus.wait_for(receiver, lambda: len(receiver.events()) >= 120, 60, "all 120 events delivered")
    finally:
        await receiver.stop()
    assert receiver.delivered[0].event["type"] == VALIDATION_TYPE  # the handshake, alone, came first
    events = receiver.events()
    assert all(r.headers["Content-Type"].startswith(BATCH_CONTENT_TYPE) for r in events)
    assert len(receiver.batches) < 120 / 2, f"{len(receiver.batches)} requests for 120 events: not batched"
    assert max(len(batch) for batch in receiver.batches) <= 20
    assert_in_order_per_person(events, persons=40, per_person=3)
    assert sorted(r.webhook_id for r in events) == sorted(r["idempotency_key"] for r in records)
    assert {r.event["traceparent"] for r in events} == {traceparent.decode()}
    # Each batch's webhook-id names it, and no batch carries one person twice.
    assert len({batch[0].headers["webhook-id"] for batch in receiver.batches}) == len(receiver.batches)
    assert all(len({r.event["subject"] for r in batch}) == len(batch) for batch in receiver.batches)
    ledger = await _wait_ledger(bus, records[-1]["event"]["id"], "batch-ok")
    assert ledger["status"] == "delivered" and ledger["attempts"] == 1


async def test_a_failed_batch_is_retried_and_every_event_in_it_arrives(bus):
    failed: list[int] = []

    def fail_first_batch(n, event):
        if event["type"] != VALIDATION_TYPE and not failed:
            failed.append(n)
            return Reply(503)
        return Reply()

    receiver = Receiver(bus.secret, fail_first_batch)
    await receiver.start()
    try:
        await bus.subscribe("batch-retry", receiver.url, batch={"max_events": 50, "max_wait_ms": 300}, **FAST)
        records = bus.events_for("batch-retry", persons=10, per_person=2)
        await bus.send(records)
        await bus.wait_for(receiver, lambda: len(receiver.events()) >= 20, 60, "all 20 events delivered")
    finally:
        await receiver.stop()
    [refused] = [batch for batch in receiver.batches if batch[0].status == 503]
    delivered = {r.webhook_id for r in receiver.events()}
    assert {r.webhook_id for r in refused} <= delivered  # each refused event came again, and was taken
    assert_in_order_per_person(receiver.events(), persons=10, per_person=2)
    ledger = await _wait_ledger(bus, refused[0].event["id"], "batch-retry")
    assert ledger["status"] == "delivered" and ledger["attempts"] == 2
