"""Decide, notify, record: at most one alert a day per subscription."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from agents.alerts.ledger import AlertLedger
from agents.alerts.notifiers import Alert, Notifier
from agents.alerts.policy import DeliveryHealth, FailingThresholds, is_failing, may_notify

log = structlog.get_logger(__name__)


class Alerter:
    def __init__(self, ledger: AlertLedger, notifier: Notifier, thresholds: FailingThresholds | None = None):
        self.ledger = ledger
        self.notifier = notifier
        self.thresholds = thresholds or FailingThresholds()

    async def check(self, subscription: str, contact: str, health: DeliveryHealth, now: datetime | None = None) -> bool:
        """Notify `contact` when the subscription is failing and was not alerted within a day; True when sent.

        The sending is recorded only after the notifier accepted it: a notifier that fails raises
        NotificationFailed and the next check tries again. (A crash between the two may send one alert twice.)
        """
        now = now or datetime.now(UTC)
        if not is_failing(health, self.thresholds) or not may_notify(self.ledger.last_sent(subscription), now):
            return False
        alert = Alert(
            subscription,
            contact,
            health.consecutive_failures,
            health.oldest_pending_age_seconds,
            health.last_reason,
            now,
        )
        await self.notifier.notify(alert)
        await self.ledger.record_sent(subscription, now)
        log.info("alert sent", subscription=subscription, consecutive_failures=health.consecutive_failures)
        return True
