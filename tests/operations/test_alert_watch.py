"""A running worker e-mails a failing subscription's contact, once, through a real SMTP server."""

from __future__ import annotations

import asyncio

from delivery_fixtures import delivery
from ops_bus import full_subscription, operations_bus
from samband_cli import samband
from webhook_receiver import VALIDATION_TYPE, Receiver, Reply

SUB = "ops-alert-down"
CONTACT = "drift@prove.example"
# Retries every 0.3 s, then every 10 s: nothing is dead-lettered within the test (at most 20 steps).
PATIENT = {"retry_schedule": [0.3] * 15 + [10.0] * 5, "read_timeout": 1.0, "connect_timeout": 0.5}


async def _consecutive_failures(bus) -> int:
    result = await samband(
        bus.bootstrap, "status", "--json", "--interval", "0", "--max-lag", "1000000", env={"SAMBAND_APP_ID": bus.app_id}
    )
    return next(s for s in result.json()["subscriptions"] if s["id"] == SUB)["consecutive_failures"]


async def _until(predicate, timeout: float, what: str):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if value := await predicate():
            return value
        await asyncio.sleep(0.2)  # poll interval
    raise AssertionError(f"not {what} within {timeout:.0f} s")


async def test_failing_subscription_alerts_its_contact_once(kafka_bootstrap, tmp_path, smtp_server):
    controller, mailbox = smtp_server
    alert_env = {
        "SAMBAND_ALERT_SMTP_HOST": "127.0.0.1",
        "SAMBAND_ALERT_SMTP_PORT": str(controller.port),
        "SAMBAND_ALERT_CHECK_INTERVAL_S": "1",
    }
    async with operations_bus(kafka_bootstrap, tmp_path, alert_env) as bus:
        # Verified first, then every event is refused with 503.
        receiver = Receiver(bus.secret, lambda _n, event: Reply() if event["type"] == VALIDATION_TYPE else Reply(503))
        await receiver.start()
        try:
            subscription = full_subscription(SUB, receiver.url, "all", ["Death"], {"Death": ["envelope.id"]}, **PATIENT)
            subscription["system"]["contact"] = CONTACT
            await bus.put_subscription(subscription)
            for n in range(6):
                await bus.send([delivery(SUB, f"{n:032x}", f"alert-{n}", 0)])

            async def mailed():
                return len(mailbox.messages) >= 1

            await _until(mailed, 60, "alerted")
            failures_at_alert = await _consecutive_failures(bus)

            # Many more failed attempts, and so many more checks of the watch: still one e-mail.
            async def failed_on():
                return await _consecutive_failures(bus) >= failures_at_alert + 15

            await _until(failed_on, 60, "failing further")
        finally:
            await receiver.stop()

    assert len(mailbox.messages) == 1
    recipients, message = mailbox.messages[0]
    assert recipients == [CONTACT]
    assert SUB in message["Subject"]
