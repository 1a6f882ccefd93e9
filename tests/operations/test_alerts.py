"""Alerts: decided by a small policy, sent by real SMTP and webhook, at most once a day, remembered across restarts in Kafka."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from kafka_io import read_to_end

from agents.alerts.alerter import Alerter
from agents.alerts.ledger import AlertLedger
from agents.alerts.notifiers import Alert, NotificationFailed, SmtpNotifier, WebhookNotifier
from agents.alerts.policy import DeliveryHealth, FailingThresholds, is_failing, may_notify
from bus.topics import ALERTS

FAILING = DeliveryHealth(consecutive_failures=8, oldest_pending_age_seconds=5400, last_reason="http.503")
NOON = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("health", "failing"),
    [
        (DeliveryHealth(0, None), False),
        (DeliveryHealth(0, 99_999), False),  # nothing has failed: a long queue alone is not failing
        (DeliveryHealth(4, 60), False),
        (DeliveryHealth(5, 60), True),
        (DeliveryHealth(1, 3600), True),
        (DeliveryHealth(1, None), False),
    ],
)
def test_failing_means_many_failures_in_a_row_or_an_old_pending_delivery(health, failing):
    assert is_failing(health, FailingThresholds(consecutive_failures=5, oldest_pending_seconds=3600)) is failing


def test_contact_may_be_told_again_only_after_a_day():
    assert may_notify(None, NOON)
    assert not may_notify(NOON, NOON + timedelta(hours=23, minutes=59))
    assert may_notify(NOON, NOON + timedelta(days=1))


@pytest.fixture
async def app_id(kafka_bootstrap):
    """A unique app id; its `<app id>-alerts` topic is deleted after the test."""
    app_id = f"ops-alerts-{uuid.uuid4().hex[:8]}"
    yield app_id
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        if ALERTS.name(app_id) in await admin.list_topics():
            await admin.delete_topics([ALERTS.name(app_id)])
    finally:
        await admin.close()


async def test_failing_subscription_mails_its_contact_once_a_day_also_after_a_restart(
    kafka_bootstrap, smtp_server, app_id
):
    controller, mailbox = smtp_server
    notifier = SmtpNotifier(controller.hostname, controller.port, "samband@kommune.example")

    ledger = await AlertLedger.open(kafka_bootstrap, app_id)
    try:
        alerter = Alerter(ledger, notifier)
        assert await alerter.check("bergen-helsestasjon", "drift@bergen.example", FAILING, now=NOON)
        assert not await alerter.check(
            "bergen-helsestasjon", "drift@bergen.example", FAILING, now=NOON + timedelta(hours=6)
        )
        assert not await alerter.check("oslo-skole", "drift@oslo.example", DeliveryHealth(1, 30, "http.500"), now=NOON)
    finally:
        await ledger.close()
    assert len(mailbox.messages) == 1
    recipients, mail = mailbox.messages[0]
    assert recipients == ["drift@bergen.example"]
    assert mail["Subject"] == "Samband: subscription bergen-helsestasjon keeps failing"
    assert "Failed attempts in a row: 8" in mail.get_payload()

    # A new worker reads what was sent from the compacted topic: still nothing within the day.
    restarted = await AlertLedger.open(kafka_bootstrap, app_id)
    try:
        alerter = Alerter(restarted, notifier)
        assert restarted.last_sent("bergen-helsestasjon") == NOON
        assert not await alerter.check(
            "bergen-helsestasjon", "drift@bergen.example", FAILING, now=NOON + timedelta(hours=20)
        )
        assert await alerter.check(
            "bergen-helsestasjon", "drift@bergen.example", FAILING, now=NOON + timedelta(days=1, minutes=1)
        )
    finally:
        await restarted.close()
    assert len(mailbox.messages) == 2
    assert [r.key for r in await read_to_end(kafka_bootstrap, restarted.topic)] == [b"bergen-helsestasjon"] * 2


async def _receiver(status: int):
    received: list[dict] = []

    async def alert(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=status)

    web_app = web.Application()
    web_app.router.add_post("/alerts", alert)
    return TestServer(web_app, host="127.0.0.1"), received


async def test_webhook_notifier_posts_the_alert_as_json():
    server, received = await _receiver(204)
    async with server:
        alert = Alert("bergen-helsestasjon", "drift@bergen.example", 8, 5400.0, "http.503", NOON)
        await WebhookNotifier(str(server.make_url("/alerts"))).notify(alert)
    assert received == [
        {
            "subscription": "bergen-helsestasjon",
            "contact": "drift@bergen.example",
            "consecutive_failures": 8,
            "oldest_pending_age_seconds": 5400.0,
            "last_reason": "http.503",
            "detected_at": NOON.isoformat(),
            "summary": "Samband: subscription bergen-helsestasjon keeps failing",
        }
    ]


async def test_refused_alert_is_not_recorded_so_the_next_check_sends_it(kafka_bootstrap, app_id):
    refusing, refused = await _receiver(500)
    accepting, accepted = await _receiver(200)
    ledger = await AlertLedger.open(kafka_bootstrap, app_id)
    try:
        async with refusing, accepting:
            with pytest.raises(NotificationFailed, match="answered 500"):
                await Alerter(ledger, WebhookNotifier(str(refusing.make_url("/alerts")))).check(
                    "oslo-skole", "drift@oslo.example", FAILING, NOON
                )
            assert ledger.last_sent("oslo-skole") is None
            sent = await Alerter(ledger, WebhookNotifier(str(accepting.make_url("/alerts")))).check(
                "oslo-skole", "drift@oslo.example", FAILING, NOON + timedelta(minutes=5)
            )
    finally:
        await ledger.close()
    assert sent and len(refused) == 1 and len(accepted) == 1


async def test_a_malformed_alert_record_is_skipped_and_the_ledger_opens(kafka_bootstrap, app_id):
    sent = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    ledger = await AlertLedger.open(kafka_bootstrap, app_id)
    await ledger.record_sent("bergen-skole", sent)
    await ledger.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in [
            (b"bergen-skole", b"\x00avro"),
            (b"oslo-skole", b'{"last_sent": "2024-03-01"}'),
            (b"\xff", b"{}"),
        ]:
            await producer.send_and_wait(ALERTS.name(app_id), value, key=key)
    finally:
        await producer.stop()
    reopened = await AlertLedger.open(kafka_bootstrap, app_id)
    try:
        assert reopened.last_sent("bergen-skole") == sent  # the last readable value stands
        assert reopened.last_sent("oslo-skole") is None  # a time without its zone is not one
    finally:
        await reopened.close()
