"""How long reading the metrics holds a worker's event loop, by the number of subscriptions with deliveries.

    .venv/bin/python bench/bench_metrics.py [--subscriptions 1000 5000 18000] [--repeat 3]

No broker. For each count, every subscription gets deliveries (a delivered attempt and an
end-to-end latency observed, as the delivery stage records them), then, in turns, a ticker task
wakes every 10 ms while one reading runs, and the longest it waited is reported (what any ready
work waited):
- the dashboard's sample: the totals kept as deliveries are recorded (`metrics.latency_buckets`,
  `metrics.attempts`);
- a /metrics scrape's text made on the loop, whole in one thread (as the endpoint did before
  2026-12-08, then from prometheus_client's registry), and piece by piece, each piece in a thread
  (what agents/web/operations.py does).
Medians and ranges over the turns, in ms. (The dashboard's sample walked every subscription's
series before 2026-12-07: docs/operations.md has its figures.)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents import metrics


async def kept_totals() -> None:
    """The dashboard's sample, on the loop."""
    metrics.latency_buckets()
    metrics.attempts()


async def text_on_the_loop() -> None:
    metrics.exposition()


async def text_in_one_thread() -> None:
    await asyncio.to_thread(metrics.exposition)


async def pieces_in_threads() -> None:
    """As agents/web/operations.py sends the text."""
    pieces = metrics.exposition_pieces()
    while await asyncio.to_thread(next, pieces, None) is not None:
        pass


async def longest_wait(reading: Callable[[], Awaitable[None]]) -> float:
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
    await reading()
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
    print(f"{'subscriptions':>13} | {'reading':<48} | {'longest loop wait, ms: median (range)':>38}")
    for count in args.subscriptions:
        for i in range(made, count):
            metrics.delivery(f"bench-sub-{i}", "delivered")
            metrics.observe_end_to_end_latency(f"bench-sub-{i}", 0.3)
        made = max(made, count)
        contenders = [
            ("dashboard sample, kept totals", kept_totals),
            ("/metrics text on the loop", text_on_the_loop),
            ("/metrics text whole, in one thread", text_in_one_thread),
            ("/metrics text in pieces, each in a thread", pieces_in_threads),
        ]
        waits: dict[str, list[float]] = {name: [] for name, _ in contenders}
        for _ in range(args.repeat):
            for name, reading in contenders:  # in turns
                waits[name].append(await longest_wait(reading))
        for name, values in waits.items():
            print(f"{count:>13,} | {name:<48} | {median(values):>10,.1f} ({min(values):,.1f}-{max(values):,.1f})")


if __name__ == "__main__":
    asyncio.run(main())
