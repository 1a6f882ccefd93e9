"""The webhook sender against real HTTP receivers: signing, CloudEvents modes, outcomes, timeouts."""

from __future__ import annotations

import pytest
from delivery_fixtures import cloud_event
from webhook_receiver import Receiver, Reply

from connectors.webhook.config import WebhookConfig
from connectors.webhook.network import AllowList
from connectors.webhook.outcome import parse_retry_after
from connectors.webhook.secrets import SecretError, new_secret, resolve_secret
from connectors.webhook.sender import WebhookSender

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

LOOPBACK = AllowList.parse("127.0.0.0/8")  # the tests' receivers listen there


@pytest.fixture
def secret(monkeypatch):
    value = new_secret()
    monkeypatch.setenv("TEST_HOOK_SECRET", value)
    return value


async def _send(receiver: Receiver, config: WebhookConfig, event: dict, msg_id: str = "ev-1.sub-a"):
    sender = WebhookSender(config, LOOPBACK)
    try:
        return await sender.send(event, msg_id, TRACEPARENT)
    finally:
        await sender.close()


async def test_structured_delivery_is_signed_and_parses_as_cloudevent(secret):
    receiver = Receiver(secret)
    url = await receiver.start()
    try:
        outcome = await _send(
            receiver, WebhookConfig(url=url, secret_ref="env:TEST_HOOK_SECRET"), cloud_event("ev-1", "p1", 7)
        )
    finally:
        await receiver.stop()
    assert outcome.status == "delivered" and outcome.http_status == 204
    [got] = receiver.delivered  # the receiver verified the signature with standardwebhooks
    assert got.webhook_id == "ev-1.sub-a"
    assert got.headers["Content-Type"].startswith("application/cloudevents+json")
    assert got.event["id"] == "ev-1" and got.event["type"] == "no.samband.events.Move"
    assert got.event.get_data() == {"movedDate": "2024-03-01", "seq": 7}
    assert got.headers["traceparent"] == TRACEPARENT


async def test_binary_mode_carries_attributes_in_ce_headers(secret):
    receiver = Receiver(secret)
    url = await receiver.start()
    try:
        config = WebhookConfig(url=url, secret_ref="env:TEST_HOOK_SECRET", mode="binary")
        outcome = await _send(receiver, config, cloud_event("ev-2", "p1", 3))
    finally:
        await receiver.stop()
    assert outcome.status == "delivered"
    [got] = receiver.delivered
    assert got.headers["ce-id"] == "ev-2" and got.headers["ce-specversion"] == "1.0"
    assert got.headers["Content-Type"] == "application/json"
    assert got.event["subject"] == "p1" and got.event.get_data()["seq"] == 3


async def test_during_rotation_both_secrets_sign(secret, monkeypatch):
    old = new_secret()
    monkeypatch.setenv("TEST_HOOK_OLD", old)
    new_receiver, old_receiver = Receiver(secret), Receiver(old)
    try:
        for receiver in (new_receiver, old_receiver):
            url = await receiver.start()
            config = WebhookConfig(url=url, secret_ref="env:TEST_HOOK_SECRET", previous_secret_ref="env:TEST_HOOK_OLD")
            assert (await _send(receiver, config, cloud_event("ev-3", "p1"))).status == "delivered"
    finally:
        await new_receiver.stop()
        await old_receiver.stop()
    signatures = new_receiver.delivered[0].headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert len(old_receiver.delivered) == 1  # a receiver still on the old secret verifies too


@pytest.mark.parametrize(
    ("reply", "kind", "reason", "retry_after"),
    [
        (Reply(200), "delivered", None, None),
        (Reply(410), "rejected", "delivery.gone", None),
        (Reply(429, headers={"Retry-After": "7"}), "retry", "http.429", 7.0),
        (Reply(503, headers={"Retry-After": "2"}), "retry", "http.503", 2.0),
        (Reply(400), "rejected", "delivery.rejected", None),
        (Reply(422), "rejected", "delivery.rejected", None),
        (Reply(500), "retry", "http.500", None),
        (Reply(502), "retry", "http.502", None),
    ],
)
async def test_status_codes_map_to_outcomes(secret, reply, kind, reason, retry_after):
    receiver = Receiver(secret, lambda _n, _e: reply)
    url = await receiver.start()
    try:
        outcome = await _send(
            receiver, WebhookConfig(url=url, secret_ref="env:TEST_HOOK_SECRET"), cloud_event("ev-4", "p1")
        )
    finally:
        await receiver.stop()
    assert (outcome.status, outcome.reason, outcome.http_status, outcome.retry_after) == (
        kind,
        reason,
        reply.status,
        retry_after,
    )


async def test_slow_subscriber_times_out_as_retry(secret):
    receiver = Receiver(secret, lambda _n, _e: Reply(delay=2.0))
    url = await receiver.start()
    try:
        config = WebhookConfig(url=url, secret_ref="env:TEST_HOOK_SECRET", read_timeout=0.2)
        outcome = await _send(receiver, config, cloud_event("ev-5", "p1"))
    finally:
        await receiver.stop()
    assert (outcome.status, outcome.reason) == ("retry", "delivery.timeout")


async def test_refused_connection_is_retry(secret):
    receiver = Receiver(secret)
    url = await receiver.start()
    await receiver.stop()  # nothing listens on the port any more
    outcome = await _send(
        receiver, WebhookConfig(url=url, secret_ref="env:TEST_HOOK_SECRET"), cloud_event("ev-6", "p1")
    )
    assert (outcome.status, outcome.reason) == ("retry", "delivery.connection")


async def test_missing_secret_keeps_the_event_for_later(monkeypatch):
    monkeypatch.delenv("TEST_HOOK_ABSENT", raising=False)
    sender = WebhookSender(WebhookConfig(url="http://127.0.0.1:9/hook", secret_ref="env:TEST_HOOK_ABSENT"), LOOPBACK)
    outcome = await sender.send(cloud_event("ev-7", "p1"), "ev-7.sub-a")
    assert (outcome.status, outcome.reason) == ("retry", "secret.unavailable")


def test_every_secret_fault_is_one_error_that_reveals_no_name_or_value(monkeypatch, tmp_path):
    """Finding 7: the error codes told a tenant which variables exist."""
    monkeypatch.setenv("TEST_HOOK_PLAIN", "not-a-whsec-secret")
    monkeypatch.delenv("TEST_HOOK_ABSENT", raising=False)
    (tmp_path / "sub-a").write_text("whsec_!!!")
    errors = []
    for ref in (
        "env:TEST_HOOK_PLAIN",
        "env:TEST_HOOK_ABSENT",
        "vault:x",
        "file:sub-a",
        "file:missing",
        "file:../sub-a",
    ):
        with pytest.raises(SecretError) as raised:
            resolve_secret(ref, str(tmp_path))
        errors.append((raised.value.reason, str(raised.value)))
    assert len(set(errors)) == 1 and errors[0][0] == "secret.unavailable"
    assert not any(word in errors[0][1] for word in ("TEST_HOOK", "not-a-whsec", "sub-a", "vault"))


def test_a_subscription_may_name_only_its_own_secret():
    from pydantic import ValidationError

    from agents.delivery.target import TargetError, parse_target
    from agents.subscriptions.model import Subscription

    base = {
        "id": "bergen-skole",
        "system": {"name": "S", "owner": "O", "contact": "c@x.example"},
        "legal_basis": "§ 1",
        "public_body": True,
        "kommuner": ["4601"],
        "event_types": ["Death"],
        "fields": {"Death": ["deathDate"]},
    }
    hook = {"kind": "webhook", "url": "https://skole.example/hook"}
    for own in ("env:SAMBAND_WEBHOOK_SECRET_BERGEN_SKOLE", "file:bergen-skole"):
        Subscription.model_validate({**base, "delivery": {**hook, "secret_ref": own}})
        parse_target("bergen-skole", {"delivery": {**hook, "secret_ref": own}})
    for borrowed in ("env:SAMBAND_WEBHOOK_SECRET_OSLO_SKOLE", "env:HOME", "file:oslo-skole", "file:../x"):
        with pytest.raises(ValidationError, match="not the subscription's own"):
            Subscription.model_validate({**base, "delivery": {**hook, "secret_ref": borrowed}})
        with pytest.raises(TargetError, match="not the subscription's own"):
            parse_target("bergen-skole", {"delivery": {**hook, "secret_ref": borrowed}})


def test_retry_after_accepts_seconds_and_http_dates():
    from datetime import UTC, datetime

    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def _sink(url: str):
    import structlog

    from connectors.api import Context, DeadLetters, Output, StateStore
    from connectors.webhook.sink import WebhookSink

    config = WebhookSink.parse_config({"url": url, "secret_ref": "env:TEST_HOOK_SECRET"})
    return WebhookSink(
        config,
        Context(
            "test-hook", Output(), DeadLetters(), StateStore(), structlog.get_logger(), {"webhook_allow": LOOPBACK}
        ),
    )


async def test_sink_writes_a_batch_in_order_with_idempotency_keys_as_webhook_ids(secret):
    import json

    from delivery_fixtures import delivery

    from connectors.api import SinkRecord

    receiver = Receiver(secret)
    url = await receiver.start()
    sink = _sink(url)
    records = [
        SinkRecord(
            b"k", json.dumps(delivery("sub-a", "p1", f"ev-{i}", i)).encode(), [("traceparent", TRACEPARENT.encode())]
        )
        for i in range(3)
    ]
    bad = SinkRecord(b"k", b"{not json")
    try:
        outcomes = await sink.write([*records, bad])
    finally:
        await sink.stop()
        await receiver.stop()
    assert [o.status for o in outcomes] == ["delivered"] * 3 + ["rejected"]
    assert outcomes[3].reason == "delivery.malformed"
    assert sorted(r.webhook_id for r in receiver.delivered) == [f"ev-{i}.sub-a" for i in range(3)]
    assert {r.headers["traceparent"] for r in receiver.delivered} == {TRACEPARENT}


async def test_verification_event_is_signed_and_typed(secret):
    receiver = Receiver(secret)
    url = await receiver.start()
    sink = _sink(url)
    try:
        outcome = await sink.verify("sub-a")
    finally:
        await sink.stop()
        await receiver.stop()
    assert outcome.status == "delivered"
    [got] = receiver.delivered
    assert (
        got.event["type"] == "no.samband.subscription.validation"
        and got.event.get_data()["subscription"] == "sub-a"
        and got.event.get_data()["challenge"]
    )


def test_config_errors_name_fields_not_values():
    from connectors.api import ConfigError
    from connectors.webhook.sink import WebhookSink

    with pytest.raises(ConfigError) as bad:
        WebhookSink.parse_config({"url": "ftp://x", "secret_ref": "env:A", "mode": "weird"})
    assert "url" in str(bad.value) and "mode" in str(bad.value)
