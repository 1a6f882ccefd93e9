"""What one delivery attempt's result means for the event (docs/delivery.md, "Outcomes").

The sink API's `Outcome` (delivered / retry / rejected) carries two webhook facts more:
the HTTP status, and how long the subscriber asked us to wait (429/503 `Retry-After`).
A 410 is `rejected` with reason `delivery.gone`: the delivery stage then disables the subscription.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from connectors.api import Outcome

GONE = "delivery.gone"
REJECTED = "delivery.rejected"
TIMEOUT = "delivery.timeout"
CONNECTION = "delivery.connection"


@dataclass(frozen=True)
class HttpOutcome(Outcome):
    http_status: int | None = None
    retry_after: float | None = None  # seconds


def classify(status: int, retry_after_header: str | None = None) -> HttpOutcome:
    if 200 <= status < 300:
        return HttpOutcome("delivered", None, "", status)
    if status == 410:
        return HttpOutcome("rejected", GONE, "subscriber answered 410 Gone", status)
    if status in (429, 503):
        return HttpOutcome("retry", f"http.{status}", "", status, parse_retry_after(retry_after_header))
    if 400 <= status < 500:
        return HttpOutcome("rejected", REJECTED, f"subscriber answered {status}", status)
    return HttpOutcome("retry", f"http.{status}", "", status)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
