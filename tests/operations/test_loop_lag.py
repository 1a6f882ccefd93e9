"""agents.loop_lag: a blocked event loop shows in `samband_event_loop_lag_seconds`, and its stall is logged."""

from __future__ import annotations

import time

import structlog
from support import until

from agents import metrics
from agents.loop_lag import LoopLag, Stalls


def _count() -> float:
    return metrics.REGISTRY.get_sample_value("samband_event_loop_lag_seconds_count") or 0.0


def _beyond(seconds: str) -> float:
    """Lag samples longer than `seconds` (a bucket bound) so far."""
    total = _count()
    within = metrics.REGISTRY.get_sample_value("samband_event_loop_lag_seconds_bucket", {"le": seconds}) or 0.0
    return total - within


async def test_a_blocked_loop_is_measured_and_its_stall_logged():
    before = _beyond("1.0")
    lag = LoopLag()
    with structlog.testing.capture_logs() as logged:
        await lag.start()
        try:
            measured = _count()
            await until(lambda: _count() > measured)  # the measure runs: its next wake-up is asked for
            time.sleep(1.3)  # noqa: ASYNC251  # the fault: a callback that holds the loop (a blocking call, a long collection)
            await until(lambda: _beyond("1.0") > before)
        finally:
            await lag.stop()
    assert _beyond("1.0") >= before + 1  # (another stall of a starved machine may come too)
    stalled = [line for line in logged if line["event"] == "worker.event_loop_stalled"]
    assert stalled and 1.2 <= stalled[0]["longest_s"] < 5  # the wake-up was asked before the hold


def test_stalls_are_logged_at_most_once_a_minute_with_the_longest_and_how_many():
    stalls = Stalls()
    with structlog.testing.capture_logs() as logged:
        stalls.seen(0.5, now=0.0)  # not a stall
        stalls.seen(1.5, now=1.0)  # the first: logged at once
        stalls.seen(3.0, now=20.0)  # within the minute: counted
        stalls.seen(1.1, now=40.0)
        stalls.seen(0.01, now=61.5)  # a minute after the line: logged, though no stall came now
        stalls.seen(0.01, now=200.0)  # none since: nothing to log
    assert [(line["longest_s"], line["stalls"], line["since_s"]) for line in logged] == [
        (1.5, 1, None),
        (3.0, 2, 60),
    ]
