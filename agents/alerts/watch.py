"""The worker's alert watch: every `alert_check_interval_s`, on the leader worker only, look for
failing subscriptions (the same view as `samband status`) and alert their contacts.

Installed on the worker's app by agents/assembly.py; without a configured notifier it adds nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

import faust
import structlog

from agents.alerts.alerter import Alerter
from agents.alerts.ledger import AlertLedger
from agents.alerts.notifiers import Notifier, SmtpNotifier, WebhookNotifier
from agents.alerts.policy import DeliveryHealth
from agents.config import Settings, bootstrap_servers
from agents.delivery_health import subscription_health
from agents.subscriptions.store import read_all
from bus.malformed import json_object, skip_malformed
from bus.topics import SUBSCRIPTIONS

log = structlog.get_logger(__name__)


def notifier_from_settings(settings: Settings) -> Notifier | None:
    if settings.alert_smtp_host:
        return SmtpNotifier(settings.alert_smtp_host, settings.alert_smtp_port, settings.alert_from)
    if settings.alert_webhook_url:
        return WebhookNotifier(settings.alert_webhook_url)
    return None


async def alert_failing_subscriptions(bootstrap: str, app_id: str, alerter: Alerter) -> list[str]:
    """Alert the contact of every failing (or suspended) subscription not alerted within a day; the ids alerted."""
    now = datetime.now(UTC)
    topic = SUBSCRIPTIONS.name(app_id)
    contacts = {}
    for sub_id, value in (await read_all(bootstrap, topic)).items():
        with skip_malformed(topic):
            if system := json_object(value).get("system"):
                contacts[sub_id] = str(system["contact"])
    alerted = []
    for row in await subscription_health(bootstrap, app_id):
        if row.state not in ("failing", "suspended") or row.id not in contacts:  # suspended: failing, and probed
            continue
        since = datetime.fromisoformat(row.failing_since) if row.failing_since else None
        health = DeliveryHealth(row.consecutive_failures, (now - since).total_seconds() if since else None, row.reason)
        if await alerter.check(row.id, contacts[row.id], health, now):
            alerted.append(row.id)
    return alerted


def install(app: faust.App, settings: Settings) -> None:
    """On the leader worker, every SAMBAND_ALERT_CHECK_INTERVAL_S: alert the contacts of failing
    subscriptions; nothing without a configured notifier."""
    notifier = notifier_from_settings(settings)
    if notifier is None:
        return
    alerter: Alerter | None = None

    @app.timer(interval=settings.alert_check_interval_s, on_leader=True)
    async def alert_watch() -> None:
        nonlocal alerter
        bootstrap = bootstrap_servers(settings)
        if alerter is None:
            alerter = Alerter(await AlertLedger.open(bootstrap, settings.app_id), notifier)
        try:
            await alert_failing_subscriptions(bootstrap, settings.app_id, alerter)
        except Exception:  # a broken mail server must not stop the watch; the next tick retries
            log.exception("alert_watch.failed")
