"""The delivery ledger: per (event, subscription), what became of the delivery.

A compacted topic keyed `<event id>/<subscription id>`; the value is JSON:
    {"event_id", "subscription", "status": "delivered" | "dead_lettered" | "held",
     "reason", "attempts", "http_status", "at"}
Beside it, each delivered event's disclosure goes to `<app id>-disclosures` (`disclosure_record`),
for the person's access report (agents/person_report.py).
`held` means the subscription was disabled (410 Gone) and the event waits for it. The latest
entry per key wins, so a dead-lettered event replayed and delivered reads `delivered`.

An entry is written to the partition its delivery record was read from, so a key's entries
normally share a partition and compaction keeps the last. A key can still have entries in two
partitions (decided before the ledger was partitioned so, or re-decided from a record read in
another partition), so readers take the entry with the latest `at`, not the last one read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

import orjson

from bus.malformed import json_object, skip_malformed
from bus.reading import read_topic


@lru_cache(maxsize=64)
def _iso_milliseconds(at: float) -> str:
    """Epoch seconds as ISO 8601 UTC to the millisecond; cached: the outcomes applied at once, and
    each delivery's ledger and disclosure records, share their `at`."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


def ledger_key(event_id: str, subscription: str) -> bytes:
    return f"{event_id}/{subscription}".encode()


def ledger_record(
    event_id: str,
    subscription: str,
    status: str,
    attempts: int,
    at: float,
    reason: str | None = None,
    http_status: int | None = None,
) -> bytes:
    """`at`: epoch seconds of the decision, the clock of the attempt log's `at`."""
    return orjson.dumps(
        {
            "event_id": event_id,
            "subscription": subscription,
            "status": status,
            "reason": reason,
            "attempts": attempts,
            "http_status": http_status,
            "at": _iso_milliseconds(at),
        }
    )


def disclosure_record(event_id: str, subscription: str, sent: dict, at: float) -> tuple[bytes, bytes]:
    """(key, value) in `<app id>-disclosures` of a delivered event; `sent` is what left,
    `{"person", "type", "fields"}` (agents/delivery/dispatcher.py): the bus's pseudonym of the
    person, the event type, the paths of the `data` fields. Names only, never a value; the topic
    keeps them for SAMBAND_DISCLOSURE_RETENTION_DAYS."""
    key = f"{sent['person']}/{event_id}/{subscription}".encode()
    value = {
        "event_id": event_id,
        "subscription": subscription,
        "event_type": sent["type"],
        "fields": sent["fields"],
        "at": _iso_milliseconds(at),
    }
    return key, orjson.dumps(value)


async def latest_entries(bootstrap: str, topic: str, timeout: float = 30.0, prefix: bytes = b"") -> dict[bytes, dict]:
    """Ledger key -> its entry with the latest `at`, for the keys starting with `prefix`."""
    latest: dict[bytes, dict] = {}
    async for record in read_topic(bootstrap, topic, timeout):
        if record.key is not None and record.key.startswith(prefix) and record.value is not None:
            with skip_malformed(topic):
                entry = json_object(record.value)
                if not isinstance(entry.get("at"), str):
                    raise TypeError("ledger entry without its time")
                held = latest.get(record.key)
                if held is None or entry["at"] >= held["at"]:  # ISO 8601 UTC, all in one format: ordered as text
                    latest[record.key] = entry
    return latest


async def ledger_for_event(bootstrap: str, topic: str, event_id: str, timeout: float = 30.0) -> dict[str, dict]:
    """subscription -> latest ledger entry for one event, read from the compacted topic."""
    entries = await latest_entries(bootstrap, topic, timeout, f"{event_id}/".encode())
    return {entry["subscription"]: entry for entry in entries.values()}
