"""How long reading the metrics holds a worker's event loop, by the number of subscriptions with deliveries.

    .venv/bin/python bench/bench_metrics.py [--subscriptions 1000 5000 18000] [--repeat 3]

No broker. For each count, every subscription gets deliveries (a delivered attempt and an
end-to-end latency observed, as the delivery stage records them), then, in turns, a ticker task
wakes every 10 ms while one reading runs, and the longest it waited is reported (what any ready
work waited):
- the dashboard's sample, the old way: the latency histogram's and the attempts counter's
  labelled families walked and summed (what agents/web/history.py did before 2026-12-07);
- the dashboard's sample now: the totals kept as deliveries are recorded (`metrics.latency_buckets`,
  `metrics.attempts`);
- a /metrics scrape's text built on the loop (before), and in a thread (now, agents/web/operations.py).
Medians and ranges over the turns, in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents import metrics


def walked_sample() -> None:
    """The old sample: every subscription's series collected and summed."""
    totals: dict[float, float] = {}
    found: dict[str, dict[str, int]] = {}
    for family in metrics.SUBSCRIPTION_SERIES.collect():
        for sample in family.samples:
            if sample.name == "samband_end_to_end_latency_seconds_bucket":
                totals[float(sample.labels["le"])] = totals.get(float(sample.labels["le"]), 0.0) + sample.value
            elif sample.name == "samband_deliveries_total":
                counts = found.setdefault(sample.labels["subscription"], {"delivered": 0, "failed": 0})
                counts["delivered" if sample.labels["outcome"] == "delivered" else "failed"] += int(sample.value)


def kept_sample() -> None:
    metrics.latency_buckets()
    metrics.attempts()


async def longest_wait(reading: Callable[[], object], in_thread: bool) -> float:
    """The longest a 10 ms ticker waited beyond its 10 ms while `reading` ran, in ms."""
    longest, done = 0.0, asyncio.Event()

    async def tick() -> None:
        nonlocal longest
        while not done.is_set():
            asked = time.perf_counter() + 0.01
            await asyncio.sleep(0.01)
            longest = max(longest, time.perf_counter() - asked)

    ticker = asyncio.ensure_future(tick())
    await asyncio.sleep(0.05)  # the ticker's first wake-up is asked for (a pace, not a wait for an outcome)
    if in_thread:
        await asyncio.to_thread(reading)
    else:
        reading()
    await asyncio.sleep(0.02)  # the ticker sees the end of a reading that held the loop
    done.set()
    await ticker
    return longest * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, nargs="+", default=[1000, 5000, 18000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    made = 0
    print(f"{'subscriptions':>13} | {'reading':<44} | {'longest loop wait, ms: median (range)':>38}")
    for count in args.subscriptions:
        for i in range(made, count):
            metrics.delivery(f"bench-sub-{i}", "delivered")
            metrics.observe_end_to_end_latency(f"bench-sub-{i}", 0.3)
        made = max(made, count)
        contenders = [
            ("dashboard sample, families walked (before)", walked_sample, False),
            ("dashboard sample, kept totals (now)", kept_sample, False),
            ("/metrics text on the loop (before)", metrics.exposition, False),
            ("/metrics text in a thread (now)", metrics.exposition, True),
        ]
        waits: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
        for _ in range(args.repeat):
            for name, reading, in_thread in contenders:  # in turns
                waits[name].append(await longest_wait(reading, in_thread))
        for name, values in waits.items():
            print(f"{count:>13,} | {name:<44} | {median(values):>10,.1f} ({min(values):,.1f}-{max(values):,.1f})")


if __name__ == "__main__":
    asyncio.run(main())
