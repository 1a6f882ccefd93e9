"""Prometheus metrics of the bus, served as `/metrics` by every worker.

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
| `samband_deliveries_total` * | counter | subscription, outcome |
| `samband_retry_backlog` * | gauge | subscription |
| `samband_duplicate_events_total` | counter | |
| `samband_delivery_in_memory` * | gauge | subscription |
| `samband_delivery_left_in_topic` * | gauge | subscription |
| `samband_delivery_backlog_expired_total` * | counter | subscription |
| `samband_consumer_lag` | gauge | group, topic, partition |
| `samband_end_to_end_latency_seconds` * | histogram | subscription |
| `samband_malformed_records_total` | counter | topic, reason |
| `samband_event_loop_lag_seconds` | histogram | |
| `samband_heap_trim_duration_seconds` | histogram | |
| `process_resident_memory_bytes` and the other `process_*` | gauge, counter | |

The families marked * have a series per subscription: they are kept here as plain numbers
(`_SubscriptionSeries`, about 500 bytes a subscription) and written into the text by
`_subscription_text`, not held in prometheus_client's registry (`REGISTRY`), whose labelled
children cost about 7 KB a subscription. Read them through `exposition()` (the text),
`attempts()` or `latency_buckets()`. The others are prometheus_client's, in `REGISTRY`.

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
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.utils import floatToGoString

from bus import malformed

# No `_created` series (a creation timestamp per counter and histogram): no dashboard reads them,
# and the subscriptions' series, written by this module, have none.
disable_created_metrics()
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

OUTCOMES = ("delivered", "retry", "rejected", "dead_lettered")
_OUTCOME_INDEX = {outcome: index for index, outcome in enumerate(OUTCOMES)}
_DELIVERED = _OUTCOME_INDEX["delivered"]

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


def _outcome_index(value: str) -> int:
    index = _OUTCOME_INDEX.get(value)
    if index is None:
        raise LabelValueError(f"metric label 'outcome' refused: not one of {sorted(OUTCOMES)}")
    return index


EVENTS_IN = Counter("samband_events_in", "Records read from a topic by the bus.", ["topic"], registry=REGISTRY)
EVENTS_OUT = Counter("samband_events_out", "Records written to a topic by the bus.", ["topic"], registry=REGISTRY)
VALIDATION_FAILURES = Counter(
    "samband_validation_failures",
    "Events refused by validation, by dead-letter reason code.",
    ["reason"],
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
_LE = tuple(floatToGoString(bound) for bound in LATENCY_BOUNDS)  # as prometheus_client writes `le`


class _SubscriptionSeries:
    """One subscription's series, as plain numbers. prometheus_client's labelled children cost
    about 7 KB a subscription (a lock and an object per histogram bucket): 18,000 subscriptions
    with deliveries held over 100 MiB of each worker process (docs/national-scale.md, "Where the
    memory goes")."""

    __slots__ = ("attempts", "buckets", "expired", "in_memory", "latency_sum", "left_in_topic", "retry_backlog")

    def __init__(self) -> None:
        self.attempts = [0] * len(OUTCOMES)  # by outcome, in the order of OUTCOMES
        self.buckets: array[int] | None = None  # deliveries per latency bucket (not cumulative), from the first
        self.latency_sum = 0.0  # their latencies summed, seconds
        self.retry_backlog: int | None = None  # the gauges and the counter: None until first set
        self.in_memory: int | None = None
        self.left_in_topic: int | None = None
        self.expired: int | None = None


_series_by_subscription: dict[str, _SubscriptionSeries] = {}  # subscription id (checked once) -> its series

SCRAPE_PIECE = 200  # subscriptions of one family a piece of a scrape's text holds (the histogram's: about 300 KB)


Lines = Callable[[str, str, _SubscriptionSeries], Iterator[str]]  # (family name, subscription, its series)


def _deliveries_lines(name: str, sub: str, series: _SubscriptionSeries) -> Iterator[str]:
    for outcome, count in zip(OUTCOMES, series.attempts, strict=True):
        if count:
            yield f'{name}{{subscription="{sub}",outcome="{outcome}"}} {floatToGoString(count)}\n'


def _value_lines(attribute: str) -> Lines:
    """The lines of a family with one value a subscription, once it has been set."""

    def lines(name: str, sub: str, series: _SubscriptionSeries) -> Iterator[str]:
        value = getattr(series, attribute)
        if value is not None:
            yield f'{name}{{subscription="{sub}"}} {floatToGoString(value)}\n'

    return lines


def _latency_lines(name: str, sub: str, series: _SubscriptionSeries) -> Iterator[str]:
    if series.buckets is None:
        return
    total = 0
    for le, count in zip(_LE, series.buckets.tolist(), strict=True):
        total += count
        yield f'{name}_bucket{{subscription="{sub}",le="{le}"}} {floatToGoString(total)}\n'
    yield f'{name}_count{{subscription="{sub}"}} {floatToGoString(total)}\n'
    yield f'{name}_sum{{subscription="{sub}"}} {floatToGoString(series.latency_sum)}\n'


# The families with a series per subscription: (name, type, help, the lines of one subscription).
_SUBSCRIPTION_FAMILIES: tuple[tuple[str, str, str, Lines], ...] = (
    ("samband_deliveries_total", "counter", "Delivery attempts, by subscription and outcome.", _deliveries_lines),
    (
        "samband_retry_backlog",
        "gauge",
        "Deliveries waiting for a retry.",
        _value_lines("retry_backlog"),
    ),
    (
        "samband_delivery_in_memory",
        "gauge",
        "Deliveries a subscription holds in the worker's memory (at most SAMBAND_DELIVERY_MEMORY_PER_SUBSCRIPTION).",
        _value_lines("in_memory"),
    ),
    (
        "samband_delivery_left_in_topic",
        "gauge",
        "Deliveries a subscription left in the deliveries topic, to take when it has room again.",
        _value_lines("left_in_topic"),
    ),
    (
        "samband_delivery_backlog_expired_total",
        "counter",
        "Times the deliveries topic's retention deleted records a subscription had left there and not yet taken.",
        _value_lines("expired"),
    ),
    (
        "samband_end_to_end_latency_seconds",
        "histogram",
        "Seconds from an event's ingest to its delivery to a subscriber.",
        _latency_lines,
    ),
)


def _subscription_text() -> Iterator[bytes]:
    """Every subscription's series in Prometheus text format: each family's header, then its
    series SCRAPE_PIECE subscriptions a piece, written straight from the plain numbers.
    prometheus_client's collection would first make an object per sample (about 400 bytes each,
    20 a subscription with deliveries), which at 5,000 subscriptions was 70 MiB more of the
    worker process at every scrape. It reads a copy of the subscriptions; a count the loop
    raises meanwhile shows in this scrape or the next."""
    subscriptions = list(_series_by_subscription.copy().items())  # (one C call: the loop adds meanwhile)
    for name, kind, help_text, lines in _SUBSCRIPTION_FAMILIES:
        yield f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n".encode()
        for start in range(0, len(subscriptions), SCRAPE_PIECE):
            piece = "".join(
                line for sub, series in subscriptions[start : start + SCRAPE_PIECE] for line in lines(name, sub, series)
            )
            if piece:
                yield piece.encode()


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


# What the dashboard reads every sample (agents/web/history.py), kept as it is recorded: before
# 2026-12-07 it collected prometheus_client's labelled families (18 samples a subscription for the
# latency histogram), which held the event loop 0.64 s a sample at 5,000 subscriptions.
_latency_total = [0] * len(LATENCY_BOUNDS)  # deliveries per bucket, all subscriptions (not cumulative)


def _series(subscription: str) -> _SubscriptionSeries:
    """The subscription's series; its id is checked the first time (a refused one never is kept)."""
    series = _series_by_subscription.get(subscription)
    if series is None:
        series = _series_by_subscription[_checked("subscription", subscription, _SUBSCRIPTION)] = _SubscriptionSeries()
    return series


def delivery(subscription: str, outcome: str) -> None:
    index = _outcome_index(outcome)
    _series(subscription).attempts[index] += 1


def set_retry_backlog(subscription: str, count: int) -> None:
    _series(subscription).retry_backlog = count


def set_delivery_memory(subscription: str, held: int, left: int) -> None:
    series = _series(subscription)
    series.in_memory, series.left_in_topic = held, left


def backlog_expired(subscription: str) -> None:
    series = _series(subscription)
    series.expired = (series.expired or 0) + 1


def set_consumer_lag(group: str, topic: str, partition: int, lag: int) -> None:
    CONSUMER_LAG.labels(_checked("group", group, _GROUP), _checked("topic", topic, _TOPIC), str(int(partition))).set(
        lag
    )


def observe_end_to_end_latency(subscription: str, seconds: float) -> None:
    series = _series(subscription)
    bucket = bisect_left(LATENCY_BOUNDS, seconds)  # the first bound >= seconds, as Prometheus's le
    if series.buckets is None:
        series.buckets = array("q", bytes(8 * len(LATENCY_BOUNDS)))
    series.buckets[bucket] += 1
    series.latency_sum += seconds
    _latency_total[bucket] += 1


def latency_buckets() -> list[tuple[float, float]]:
    """(upper bound in seconds, cumulative count) of this process's end-to-end latency, over all
    subscriptions: the histogram's buckets summed, without reading every subscription's series."""
    total, cumulative = 0, []
    for bound, count in zip(LATENCY_BOUNDS, _latency_total, strict=True):
        total += count
        cumulative.append((bound, float(total)))
    return cumulative


def attempts() -> dict[str, dict[str, int]]:
    """Per subscription: attempts this process made, delivered and failed, since it started."""
    return {
        sub: {"delivered": series.attempts[_DELIVERED], "failed": sum(series.attempts) - series.attempts[_DELIVERED]}
        for sub, series in list(_series_by_subscription.items())
        if any(series.attempts)
    }


def duplicate_dropped() -> None:
    DUPLICATES.inc()


def observe_event_loop_lag(seconds: float) -> None:
    EVENT_LOOP_LAG.observe(seconds)


def observe_heap_trim(seconds: float) -> None:
    HEAP_TRIM.observe(seconds)


def malformed_record(topic: str, reason: str) -> None:
    MALFORMED_RECORDS.labels(_checked("topic", topic, _TOPIC), _checked("reason", reason, _REASON)).inc()


malformed.counters.append(malformed_record)


CONTENT_TYPE = CONTENT_TYPE_LATEST  # of the exposition: Prometheus text format


def exposition_pieces() -> Iterator[bytes]:
    """The metrics in Prometheus text format, in pieces: the registry's, then the subscriptions'
    series SCRAPE_PIECE subscriptions a piece, so that a scrape holds a piece at a time, however
    many subscriptions there are. With many subscriptions the whole takes a while (18 samples a
    subscription for the latency histogram; 0.36 s at 18,000): take the pieces off the event
    loop (agents/web/operations.py)."""
    yield generate_latest(REGISTRY)
    yield from _subscription_text()


def exposition() -> bytes:
    """The metrics in Prometheus text format, whole (for tests and benches: the endpoint sends pieces)."""
    return b"".join(exposition_pieces())
