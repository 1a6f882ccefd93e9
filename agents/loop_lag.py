"""How long ready work waits for the worker process's event loop: `samband_event_loop_lag_seconds`.

Every stage of a worker process (ingest, routing, delivery, their Kafka clients, the web server)
shares one asyncio event loop. A task asks to be woken `INTERVAL` after each wake-up; how much
later than asked it runs is what any callback that became ready at that moment (a fetched batch,
a subscriber's answer) waited behind the work before it: Python code of any stage, a garbage
collection, a blocking call, a CPU the process waited for. The histogram counts wake-ups, not
time: a loop held for 5 s gives one sample of 5 s. It tells an operator whether latency is spent
waiting for the process (a busy or starved loop) or elsewhere (the broker, the subscriber).

A lag of `STALL` or more is a stall. The first is logged at once (`worker.event_loop_stalled`);
later ones are counted and logged at most once a minute, with the longest and how many since the
line before (`stalls`, `longest_s`, `since_s`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from mode import Service

from agents import metrics

log = structlog.get_logger(__name__)

INTERVAL = 0.1  # seconds between two wake-ups asked for
STALL = 1.0  # a lag this long is a stall, logged
LOG_EVERY = 60.0  # seconds between two stall lines, at most


class LoopLag(Service):
    """Measures the loop's lag for as long as the worker runs (the worker makes one per process)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.stalls = Stalls()

    @Service.task
    async def _measure(self) -> None:
        while not self.should_stop:
            asked = time.monotonic() + INTERVAL
            await asyncio.sleep(INTERVAL)
            lag = max(0.0, time.monotonic() - asked)
            metrics.observe_event_loop_lag(lag)
            self.stalls.seen(lag, time.monotonic())


class Stalls:
    """Stalls counted and logged at most once every `LOG_EVERY` seconds."""

    def __init__(self) -> None:
        self.count, self.longest, self.logged_at = 0, 0.0, float("-inf")

    def seen(self, lag: float, now: float) -> None:
        """Each wake-up's lag: stalls counted since the last line are logged once a minute has passed,
        whether or not another stall comes."""
        if lag >= STALL:
            self.count += 1
            self.longest = max(self.longest, lag)
        if self.count and now - self.logged_at >= LOG_EVERY:
            since = None if self.logged_at == float("-inf") else round(now - self.logged_at)
            log.warning("worker.event_loop_stalled", longest_s=round(self.longest, 2), stalls=self.count, since_s=since)
            self.count, self.longest, self.logged_at = 0, 0.0, now
