"""Batched webhook delivery (CloudEvents batch mode): several persons' events in one POST, signed
once over the whole body, each event with its own idempotency key; per-person order kept; a
failed batch retried, every event in it delivered later, and counted once by the breaker; a 413
splits the batch; the ledger records each event.

The receiver checks each request as a subscriber would: `standardwebhooks` verifies the batch's
signature, the `cloudevents` SDK parses each event of the array.
"""

from __future__ import annotations

import orjson
import pytest
from delivery_bus import assert_in_order_per_person, running_bus
from delivery_fixtures import delivery
from test_delivery_flow import FAST, _wait_ledger
from webhook_receiver import BATCH_CONTENT_TYPE, VALIDATION_TYPE, Receiver, Reply

from connectors.api import ConfigError, Context, DeadLetters, Output, StateStore
from connectors.webhook import cloudevent
from connectors.webhook.network import AllowList
from connectors.webhook.sink import WebhookSink, _batch_id


@pytest.fixture(scope="module")
async def bus(kafka_bootstrap, tmp_path_factory):
    # A breaker that would open at the first failed batch if it counted each of its events.
    async with running_bus(
        kafka_bootstrap,
        tmp_path_factory.mktemp("webhook-batch"),
        SAMBAND_BREAKER_FAILURES="5",
        SAMBAND_BREAKER_PROBE_SECONDS="600",
    ) as bus:
        yield bus


def test_batch_bodies_keep_order_and_size_and_an_event_too_large_goes_alone():
    events = [orjson.dumps({"id": str(i), "data": "x" * i}) for i in range(30)] + [orjson.dumps({"big": "y" * 500})]
    bodies = cloudevent.batch_bodies(events, max_bytes=200)
    assert [a for a, _, _ in bodies] == [0] + [b for _, b, _ in bodies[:-1]]  # every event, in order
    assert all(orjson.loads(body) == [orjson.loads(e) for e in events[a:b]] for a, b, body in bodies)
    assert all(len(body) <= 200 for a, b, body in bodies if b - a > 1)
    assert (30, 31) in [(a, b) for a, b, _ in bodies]  # larger than max_bytes: alone
    # Packed: no body could have taken the next event.
    assert all(len(body) + 1 + len(events[b]) > 200 for a, b, body in bodies if b < len(events))


def test_a_batch_is_named_by_the_keys_it_holds():
    assert _batch_id(["a.s", "b.s"]) == _batch_id(["a.s", "b.s"])
    assert _batch_id(["a.s", "b.s"]).startswith("batch.")
    assert _batch_id(["a.s", "b.s"]) != _batch_id(["a.s"]) != _batch_id(["b.s", "a.s"])


def test_batch_mode_is_structured_only_and_its_limits_are_checked():
    def problem(batch: dict, **config) -> str:
        with pytest.raises(ConfigError) as refused:
            WebhookSink.parse_config({"url": "https://a.example/h", "secret_ref": "file:a", "batch": batch, **config})
        return str(refused.value)

    assert "batch: Value error, CloudEvents batch mode carries structured events" in problem({}, mode="binary")
    assert "batch.max_events" in problem({"max_events": 0})
    assert "batch.max_events" in problem({"max_events": True})  # no number of events
    assert "batch.max_bytes" in problem({"max_bytes": 10})


def _sink(url: str, secret_env: str, **batch) -> WebhookSink:
    config = WebhookSink.parse_config({"url": url, "secret_ref": f"env:{secret_env}", "batch": batch})
    context = Context(
        "batch-sink", Output(), DeadLetters(), StateStore(), None, {"webhook_allow": AllowList.parse("127.0.0.1")}
    )
    return WebhookSink(config, context)


async def test_a_413_splits_the_batch_until_its_parts_fit_and_a_4xx_rejects_each_event(monkeypatch):
    monkeypatch.setenv("BATCH_SECRET", secret := "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    receiver = Receiver(secret, max_body=1500)
    await receiver.start()
    sink = _sink(receiver.url, "BATCH_SECRET", max_events=20)
    try:
        deliveries = [(delivery("s", f"{p:032x}", f"split-{p}"), []) for p in range(12)]
        outcomes = await sink.write_deliveries(deliveries)
        assert [o.status for o in outcomes] == ["delivered"] * 12
        assert receiver.too_large >= 1 and all(len(r.body) <= 1500 for r in receiver.delivered)
        assert sorted(r.webhook_id for r in receiver.events()) == sorted(d["idempotency_key"] for d, _ in deliveries)

        receiver.behaviour = lambda _n, _e: Reply(422)
        outcomes = await sink.write_deliveries([(delivery("s", f"{p:032x}", f"bad-{p}"), []) for p in range(3)])
        assert [(o.status, o.reason) for o in outcomes] == [("rejected", "delivery.rejected")] * 3
    finally:
        await sink.stop()
        await receiver.stop()
    assert receiver.unverified == 0


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
    assert receiver.unverified == 0
    [handshake] = receiver.batches[0]  # the handshake came first, as a batch of one: the endpoint reads batches
    assert handshake.event["type"] == VALIDATION_TYPE and handshake in receiver.delivered
    events = receiver.events()
    assert all(r.headers["Content-Type"].startswith(BATCH_CONTENT_TYPE) for r in events)
    batches = receiver.batches[1:]
    assert len(batches) < 120 / 2, f"{len(batches)} requests for 120 events: not batched"
    assert max(len(batch) for batch in batches) <= 20
    assert_in_order_per_person(events, persons=40, per_person=3)
    assert sorted(r.webhook_id for r in events) == sorted(r["idempotency_key"] for r in records)
    assert {r.event["traceparent"] for r in events} == {traceparent.decode()}
    # Each batch's webhook-id names it, and no batch carries one person twice.
    assert len({batch[0].headers["webhook-id"] for batch in batches}) == len(batches)
    assert all(len({r.event["subject"] for r in batch}) == len(batch) for batch in batches)
    ledger = await _wait_ledger(bus, records[-1]["event"]["id"], "batch-ok")
    assert ledger["status"] == "delivered" and ledger["attempts"] == 1


async def test_a_failed_batch_is_retried_whole_counted_once_and_every_event_in_it_arrives(bus):
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
        # Had the breaker counted the 503 once per event (10 > SAMBAND_BREAKER_FAILURES 5), the
        # subscription would be suspended, probing once in 600 s: the rest would not come in time.
        await bus.wait_for(receiver, lambda: len(receiver.events()) >= 20, 60, "all 20 events delivered")
    finally:
        await receiver.stop()
    [refused] = [batch for batch in receiver.batches if batch[0].status == 503]
    assert len(refused) > 5
    delivered = {r.webhook_id for r in receiver.events()}
    assert {r.webhook_id for r in refused} <= delivered  # each refused event came again, and was taken
    assert_in_order_per_person(receiver.events(), persons=10, per_person=2)
    ledger = await _wait_ledger(bus, refused[0].event["id"], "batch-retry")
    assert ledger["status"] == "delivered" and ledger["attempts"] == 2
