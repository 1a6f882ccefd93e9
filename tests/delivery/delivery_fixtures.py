"""Builders for synthetic delivery records and subscriptions (contracts in docs/architecture.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from schemas.identity import control_digits


def synthetic_identity(n: int) -> str:
    """A synthetic identity number (month + 80), different for each n < 28 * 12 * 500."""
    day, month, individ = n % 28 + 1, (n // 28) % 12 + 1, 100 + n // (28 * 12)
    for year in range(100):
        first9 = f"{day:02d}{month + 80:02d}{year:02d}{individ:03d}"
        if digits := control_digits(first9):
            return first9 + digits
    raise ValueError(f"no synthetic number for {n}")


def cloud_event(event_id: str, person: str, seq: int = 0, event_type: str = "no.samband.events.Move") -> dict:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "urn:samband:test",
        "type": event_type,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "subject": person,
        "datacontenttype": "application/json",
        "data": {"movedDate": "2024-03-01", "seq": seq},
    }


def delivery(subscription: str, person: str, event_id: str, seq: int = 0) -> dict:
    return {
        "idempotency_key": f"{event_id}.{subscription}",
        "subscription": subscription,
        "person": person,
        "event": cloud_event(event_id, person, seq),
        "kind": "event",
    }


def delivery_key(record: dict) -> bytes:
    return f"{record['subscription']}/{record['person']}".encode()


def encode(value: dict) -> bytes:
    return json.dumps(value).encode()
