"""A malformed record on one of the bus's internal topics is skipped, logged and counted, never a crash.

    for record in records:
        with skip_malformed(record.topic):
            apply(json_object(record.value))

Every follower of an internal topic (subscriptions, delivery status, pending queues, changelogs,
alerts ledger, connector state) reads each record inside `skip_malformed`: a record that cannot
be read (not JSON, the wrong shape, no key) is left out, and the reader goes on with the next.
The log line and the count (`samband_malformed_records_total`, agents/metrics.py) name the topic
and the kind of error, never the record: it may hold anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

# What reading a record of the wrong shape raises: ValueError covers JSON, UTF-8 and pydantic
# errors; the others a missing key, a value of the wrong type, or a record without a key.
MALFORMED = (ValueError, LookupError, TypeError, AttributeError)

# Called with (topic, reason) for each skipped record; agents/metrics.py adds its counter.
counters: list[Callable[[str, str], None]] = []


class skip_malformed:
    def __init__(self, topic: str):
        self.topic = topic

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, traceback) -> bool:
        if kind is None or not issubclass(kind, MALFORMED):
            return False
        log.warning("malformed_record_skipped", topic=self.topic, reason=reason_of(kind))
        count(self.topic, kind)
        return True


def reason_of(kind: type[BaseException]) -> str:
    return f"record.{kind.__name__.lower()}"


def count(topic: str, kind: type[BaseException]) -> None:
    """Count a record of `topic` that could not be read (for a reader that logs it its own way)."""
    for counter in counters:
        counter(topic, reason_of(kind))


def json_object(value: bytes | None) -> dict:
    """The JSON object `value` holds; ValueError or TypeError when it holds something else."""
    if value is None:
        raise TypeError("no value")
    parsed = json.loads(value)
    if not isinstance(parsed, dict):
        raise TypeError("not a JSON object")
    return parsed
