"""The dashboard's own short history, sampled in the worker, so the dashboard needs no Prometheus.

    history = History(app_id, interval_s=10, span_s=3600)
    history.add(await history.take(kafka))   # the dashboard's sampling task, every interval
    history.as_json()                        # {"interval_s", "span_s", "samples": [...]}

Each sample holds, at its time `at` (epoch seconds):
- `stages`: records per second each stage wrote since the previous sample, from its output
  topic's end offsets: sources → `-ingest` (bad input included), ingest → `-events`, route →
  `-deliveries` (one record per event and entitled subscription, and each replay), deliver →
  `-delivery-ledger` (one record per delivery delivered, dead-lettered or held: outcomes, not
  attempts);
- `lag`: each consumer group's lag, summed over its partitions;
- `latency_ms`: p50 and p99 of the end-to-end latency of the deliveries this worker made since
  the previous sample: from the ingest stage's stamp (`samband-ingested-at`) to the sink's
  acknowledgement (a webhook's 2xx, the Kafka write, the file written), estimated from the
  latency histogram's buckets as Prometheus's `histogram_quantile` does (None when it made none).
  A replayed dead letter keeps its stamp, so a replay after an outage shows in p99;
- `subscriptions`: per subscription that made any, the attempts this worker made since the
  previous sample: `delivered` and `failed` (a retry, a rejection or a dead letter), for the
  sparklines.
Throughput and lag are the cluster's (every worker sees the same); latency and attempts are this
worker's own. Only counts, rates and ids: no personal data.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, field

from agents import metrics
from agents.commands.topics_and_lag import bus_groups, lag_report
from bus.inspector import KafkaInspector
from bus.topics import topic_names

# The stage and the topic whose end offsets count what it wrote.
STAGE_OUTPUTS = (("source", "ingest"), ("ingest", "events"), ("route", "deliveries"), ("deliver", "ledger"))


@dataclass
class Sample:
    at: float
    stages: dict[str, float | None]
    lag: dict[str, int]
    latency_ms: dict[str, float | None]
    subscriptions: dict[str, dict[str, int]] = field(default_factory=dict)


class History:
    def __init__(self, app_id: str, interval_s: float = 10.0, span_s: float = 3600.0):
        self.interval_s = interval_s
        self.span_s = span_s
        self._topics = {stage: getattr(topic_names(app_id), attr) for stage, attr in STAGE_OUTPUTS}
        self._app_id = app_id
        self._samples: deque[Sample] = deque(maxlen=max(2, int(span_s / interval_s)))
        self._written: tuple[float, dict[str, int]] | None = None
        self._latency = metrics.latency_buckets()
        self._attempts = metrics.attempts()

    async def take(self, kafka: KafkaInspector) -> Sample:
        """Read the broker and this worker's metrics: the sample since the previous one."""
        offsets = await kafka.offsets(await kafka.topic_partitions(f"{self._app_id}-"))
        written = dict.fromkeys(self._topics, 0)
        stage_of = {topic: stage for stage, topic in self._topics.items()}
        for row in offsets:
            if (stage := stage_of.get(row.topic)) is not None:
                written[stage] += row.end
        now, previous = time.time(), self._written
        self._written = (now, written)
        rates: dict[str, float | None] = dict.fromkeys(written)
        if previous is not None and now > previous[0]:
            rates = {s: round(max(0, n - previous[1][s]) / (now - previous[0]), 2) for s, n in written.items()}
        lag: dict[str, int] = {}
        for row in await lag_report(kafka, await bus_groups(kafka, self._app_id)):
            lag[row.group] = lag.get(row.group, 0) + row.lag
        latency, self._latency = _delta_quantiles(self._latency, metrics.latency_buckets())
        attempts = metrics.attempts()
        subscriptions = {}
        for sub, counts in attempts.items():
            delta = {kind: count - self._attempts.get(sub, {}).get(kind, 0) for kind, count in counts.items()}
            if any(delta.values()):  # a quiet subscription takes no room in the sample
                subscriptions[sub] = delta
        self._attempts = attempts
        return Sample(now, rates, lag, latency, subscriptions)

    def add(self, sample: Sample) -> None:
        self._samples.append(sample)

    def as_json(self) -> dict:
        return {"interval_s": self.interval_s, "span_s": self.span_s, "samples": [asdict(s) for s in self._samples]}


def _delta_quantiles(
    before: list[tuple[float, float]], after: list[tuple[float, float]]
) -> tuple[dict[str, float | None], list[tuple[float, float]]]:
    earlier = dict(before)
    delta = [(bound, count - earlier.get(bound, 0.0)) for bound, count in after]
    return {"p50": _quantile(0.5, delta), "p99": _quantile(0.99, delta)}, after


def _quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Linear interpolation within the bucket that holds the q-quantile (Prometheus's method), in ms."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return round(lower_bound * 1000, 1)  # above the highest finite bucket: its bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return round((lower_bound + (bound - lower_bound) * share) * 1000, 1)
        lower_bound, lower_count = bound, count
    return None
