"""When a subscription counts as failing, and when its contact may be told again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# A contact hears about one subscription at most this often.
ALERT_INTERVAL = timedelta(days=1)


@dataclass(frozen=True)
class DeliveryHealth:
    """What the delivery stage knows about one subscription right now."""

    consecutive_failures: int  # failed attempts since the last successful delivery
    oldest_pending_age_seconds: float | None  # age of the oldest delivery not yet done; None: nothing pending
    last_reason: str | None = None  # the last failure's reason code, e.g. "http.503" (never personal data)


@dataclass(frozen=True)
class FailingThresholds:
    consecutive_failures: int = 5
    oldest_pending_seconds: float = 3600.0


def is_failing(health: DeliveryHealth, thresholds: FailingThresholds = FailingThresholds()) -> bool:
    """Failing: many attempts in a row failed, or a delivery has waited too long, whichever comes first."""
    if health.consecutive_failures == 0:
        return False
    too_many = health.consecutive_failures >= thresholds.consecutive_failures
    too_old = (
        health.oldest_pending_age_seconds is not None
        and health.oldest_pending_age_seconds >= thresholds.oldest_pending_seconds
    )
    return too_many or too_old


def may_notify(last_sent: datetime | None, now: datetime) -> bool:
    return last_sent is None or now - last_sent >= ALERT_INTERVAL
