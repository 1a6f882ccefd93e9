"""Prometheus metrics of the bus, in their own registry, served as `/metrics` by every worker.

Each stage records what it does with one call:

    from agents import metrics

    metrics.event_in("samband-ingest")                      # a record was read from a topic
    metrics.event_out("samband-events")                     # a record was written to a topic
    metrics.validation_failed("identity.checksum")          # ingest refused an event (its dead-letter reason)
    metrics.delivery("bergen-helsestasjon", "delivered")    # one attempt: delivered | retry | rejected | dead_lettered
    metrics.set_retry_backlog("bergen-helsestasjon", 12)    # deliveries waiting for a retry, now
    metrics.observe_end_to_end_latency("bergen-helsestasjon", 0.8)  # seconds from ingest to delivered
    metrics.set_consumer_lag("samband", "samband-events", 3, 42)    # group, topic, partition, lag
    metrics.malformed_record("samband-delivery-status", "record.keyerror")  # an internal record skipped
    metrics.observe_event_loop_lag(0.004)                   # seconds ready work waited for the loop (agents/loop_lag.py)
    metrics.observe_heap_trim(0.002)                        # seconds one trim of the C heap took (agents/heap_trim.py)

Metric names (the Grafana dashboard in deploy/grafana/ queries these):

| name | type | labels |
|---|---|---|
| `samband_events_in_total` | counter | topic |
| `samband_events_out_total` | counter | topic |
| `samband_validation_failures_total` | counter | reason |
| `samband_deliveries_total` | counter | subscription, outcome |
| `samband_retry_backlog` | gauge | subscription |
| `samband_duplicate_events_total` | counter | |
| `samband_delivery_in_memory` | gauge | subscription |
| `samband_delivery_left_in_topic` | gauge | subscription |
| `samband_delivery_backlog_expired_total` | counter | subscription |
| `samband_consumer_lag` | gauge | group, topic, partition |
| `samband_end_to_end_latency_seconds` | histogram | subscription |
| `samband_malformed_records_total` | counter | topic, reason |
| `samband_event_loop_lag_seconds` | histogram | |
| `samband_heap_trim_duration_seconds` | histogram | |
| `process_resident_memory_bytes` and the other `process_*` | gauge, counter | |

The `process_*` metrics are prometheus_client's own of the worker process (resident and virtual
memory, CPU seconds, open files, start time), on Linux.

`samband_malformed_records_total` counts records of the bus's internal topics that could not be
read and were skipped (bus/malformed.py); `reason` is the kind of error, never the record.

Labels never hold personal data. Every label value is checked against the pattern of what it
names (a topic name, a reason code, a subscription id, an outcome); a value that does not match,
or that holds an 11-digit run (an identity number's shape), raises `LabelValueError`, whose
message names the label but never repeats the value.
"""

from __future__ import annotations

import re
from bisect import bisect_left

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from bus import malformed

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

OUTCOMES = frozenset({"delivered", "retry", "rejected", "dead_lettered"})

# What each kind of label value may look like.
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_GROUP = re.compile(r"[A-Za-z0-9._-]{1,249}")
_REASON = re.compile(r"[a-z0-9_.]{1,64}")
_SUBSCRIPTION = re.compile(r"[a-z0-9-]{1,100}")  # a subscription id (agents/subscriptions/model.py)
_IDENTITY_SHAPE = re.compile(r"\d{11}")


class LabelValueError(ValueError):
    """A metric label value is not of the allowed shape (it might carry personal data)."""


def _checked(label: str, value: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise LabelValueError(f"metric label {label!r} refused: value does not match {pattern.pattern}")
    if _IDENTITY_SHAPE.search(value):
        raise LabelValueError(f"metric label {label!r} refused: value holds an 11-digit number")
    return value


def _outcome(value: str) -> str:
    if value not in OUTCOMES:
        raise LabelValueError(f"metric label 'outcome' refused: not one of {sorted(OUTCOMES)}")
    return value


EVENTS_IN = Counter("samband_events_in", "Records read from a topic by the bus.", ["topic"], registry=REGISTRY)
EVENTS_OUT = Counter("samband_events_out", "Records written to a topic by the bus.", ["topic"], registry=REGISTRY)
VALIDATION_FAILURES = Counter(
    "samband_validation_failures",
    "Events refused by validation, by dead-letter reason code.",
    ["reason"],
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "samband_deliveries",
    "Delivery attempts, by subscription and outcome.",
    ["subscription", "outcome"],
    registry=REGISTRY,
)
RETRY_BACKLOG = Gauge("samband_retry_backlog", "Deliveries waiting for a retry.", ["subscription"], registry=REGISTRY)
DELIVERY_IN_MEMORY = Gauge(
    "samband_delivery_in_memory",
    "Deliveries a subscription holds in the worker's memory (at most SAMBAND_DELIVERY_MEMORY_PER_SUBSCRIPTION).",
    ["subscription"],
    registry=REGISTRY,
)
DELIVERY_LEFT = Gauge(
    "samband_delivery_left_in_topic",
    "Deliveries a subscription left in the deliveries topic, to take when it has room again.",
    ["subscription"],
    registry=REGISTRY,
)
BACKLOG_EXPIRED = Counter(
    "samband_delivery_backlog_expired_total",
    "Times the deliveries topic's retention deleted records a subscription had left there and not yet taken.",
    ["subscription"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "samband_consumer_lag",
    "Records not yet committed by the consumer group (end offset minus committed offset).",
    ["group", "topic", "partition"],
    registry=REGISTRY,
)
DUPLICATES = Counter(
    "samband_duplicate_events",
    "Events ingested again with an id already seen (at-least-once sources), dropped.",
    registry=REGISTRY,
)
MALFORMED_RECORDS = Counter(
    "samband_malformed_records",
    "Records of internal topics skipped because they could not be read.",
    ["topic", "reason"],
    registry=REGISTRY,
)
LATENCY_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400, float("inf"))
END_TO_END_LATENCY = Histogram(
    "samband_end_to_end_latency_seconds",
    "Seconds from an event's ingest to its delivery to a subscriber.",
    ["subscription"],
    buckets=LATENCY_BOUNDS,
    registry=REGISTRY,
)
EVENT_LOOP_LAG = Histogram(
    "samband_event_loop_lag_seconds",
    "Seconds each wake-up asked of the worker process's event loop came late (per wake-up, not per second).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
HEAP_TRIM = Histogram(
    "samband_heap_trim_duration_seconds",
    "Seconds each trim of the worker process's C heap took (in a thread; the loop waits for it only if it allocates meanwhile).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)


def event_in(topic: str, count: int = 1) -> None:
    EVENTS_IN.labels(_checked("topic", topic, _TOPIC)).inc(count)


def event_out(topic: str, count: int = 1) -> None:
    EVENTS_OUT.labels(_checked("topic", topic, _TOPIC)).inc(count)


def validation_failed(reason: str) -> None:
    VALIDATION_FAILURES.labels(_checked("reason", reason, _REASON)).inc()


# Labelled children of the per-delivery metrics, checked and looked up once per label set, not per
# delivery (that was 2-3 us a call). Bounded by the subscriptions times the outcomes.
_delivery_children: dict[tuple[str, str], Counter] = {}
_latency_children: dict[str, Histogram] = {}

# What the dashboard reads every sample (agents/web/history.py), kept as it is recorded: collecting
# the labelled families instead (18 samples a subscription for the latency histogram) held the
# event loop 0.64 s a sample at 5,000 subscriptions, in every worker process (bench/bench_metrics.py).
_latency_total = [0] * len(LATENCY_BOUNDS)  # deliveries per bucket, all subscriptions (not cumulative)
_attempt_counts: dict[str, list[int]] = {}  # subscription -> [delivered, failed]


def delivery(subscription: str, outcome: str) -> None:
    child = _delivery_children.get((subscription, outcome))
    if child is None:
        child = DELIVERIES.labels(_checked("subscription", subscription, _SUBSCRIPTION), _outcome(outcome))
        _delivery_children[(subscription, outcome)] = child
        _attempt_counts.setdefault(subscription, [0, 0])
    child.inc()
    _attempt_counts[subscription][outcome != "delivered"] += 1


def set_retry_backlog(subscription: str, count: int) -> None:
    RETRY_BACKLOG.labels(_checked("subscription", subscription, _SUBSCRIPTION)).set(count)


def set_delivery_memory(subscription: str, held: int, left: int) -> None:
    label = _checked("subscription", subscription, _SUBSCRIPTION)
    DELIVERY_IN_MEMORY.labels(label).set(held)
    DELIVERY_LEFT.labels(label).set(left)


def backlog_expired(subscription: str) -> None:
    BACKLOG_EXPIRED.labels(_checked("subscription", subscription, _SUBSCRIPTION)).inc()


def set_consumer_lag(group: str, topic: str, partition: int, lag: int) -> None:
    CONSUMER_LAG.labels(_checked("group", group, _GROUP), _checked("topic", topic, _TOPIC), str(int(partition))).set(
        lag
    )


def observe_end_to_end_latency(subscription: str, seconds: float) -> None:
    child = _latency_children.get(subscription)
    if child is None:
        child = _latency_children[subscription] = END_TO_END_LATENCY.labels(
            _checked("subscription", subscription, _SUBSCRIPTION)
        )
    child.observe(seconds)
    _latency_total[bisect_left(LATENCY_BOUNDS, seconds)] += 1  # the first bound >= seconds, as Prometheus's le


def latency_buckets() -> list[tuple[float, float]]:
    """(upper bound in seconds, cumulative count) of this process's end-to-end latency, over all
    subscriptions: the histogram's buckets summed, without walking its children."""
    total, cumulative = 0, []
    for bound, count in zip(LATENCY_BOUNDS, _latency_total, strict=True):
        total += count
        cumulative.append((bound, float(total)))
    return cumulative


def attempts() -> dict[str, dict[str, int]]:
    """Per subscription: attempts this process made, delivered and failed, since it started."""
    return {sub: {"delivered": ok, "failed": failed} for sub, (ok, failed) in _attempt_counts.items()}


def duplicate_dropped() -> None:
    DUPLICATES.inc()


def observe_event_loop_lag(seconds: float) -> None:
    EVENT_LOOP_LAG.observe(seconds)


def observe_heap_trim(seconds: float) -> None:
    HEAP_TRIM.observe(seconds)


def malformed_record(topic: str, reason: str) -> None:
    MALFORMED_RECORDS.labels(_checked("topic", topic, _TOPIC), _checked("reason", reason, _REASON)).inc()


malformed.counters.append(malformed_record)


def exposition() -> tuple[bytes, str]:
    """The registry in Prometheus text format, and its content type. With many subscriptions this
    takes a while (18 samples a subscription for the latency histogram): call it off the event
    loop (agents/web/operations.py)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
