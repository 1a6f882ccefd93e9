"""Acceptance: while events flow, a subscriber starts failing; `samband status --json` shows it
failing (or, once its breaker opens, suspended) with a growing retry backlog within 30 s, then its
recovery; the exit code follows."""

from __future__ import annotations

import asyncio
import itertools

from delivery_fixtures import delivery
from ops_bus import operations_bus  # noqa: F401  (puts tests/delivery on the path)
from samband_cli import samband
from webhook_receiver import VALIDATION_TYPE, Receiver, Reply

# Retries every 0.5 s, then every 10 s: nothing is dead-lettered within the test's minute (a
# schedule has at most 20 steps).
PATIENT = {"retry_schedule": [0.5] * 15 + [10.0] * 5, "read_timeout": 1.0, "connect_timeout": 0.5}
SUB = "ops-status-flaky"


async def _status(bus) -> tuple[int, dict]:
    result = await samband(
        bus.bootstrap, "status", "--json", "--interval", "0", "--max-lag", "1000000", env={"SAMBAND_APP_ID": bus.app_id}
    )
    assert result.code in (0, 1), result.stderr
    return result.code, next(s for s in result.json()["subscriptions"] if s["id"] == SUB)


async def _status_until(bus, predicate, timeout: float, what: str) -> tuple[int, dict]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = None
    while loop.time() < deadline:
        code, row = await _status(bus)
        if predicate(code, row):
            return code, row
        seen = (code, row)
    raise AssertionError(f"status not {what} within {timeout:.0f} s; last: {seen}")


async def _keep_sending(bus) -> None:
    """One delivery every 0.1 s, spread over 6 persons, until cancelled."""
    for n in itertools.count():
        await bus.send([delivery(SUB, f"{n % 6:032x}", f"ops-status-{n}", n // 6)])
        await asyncio.sleep(0.1)  # the pace of the flow, not a wait for an outcome


async def test_status_follows_a_subscriber_failing_and_recovering(ops_bus):
    failing = False

    def behaviour(_n, event) -> Reply:
        return Reply(503) if failing and event["type"] != VALIDATION_TYPE else Reply()

    receiver = Receiver(ops_bus.secret, behaviour)
    await receiver.start()
    flow = None
    try:
        await ops_bus.subscribe(SUB, receiver.url, **PATIENT)
        flow = asyncio.create_task(_keep_sending(ops_bus))
        await ops_bus.wait_for(receiver, lambda: len(receiver.events()) >= 10, 60, "events flowing")
        code, healthy = await _status_until(
            ops_bus, lambda c, r: r["last_delivered"] is not None, 30, "showing a delivery"
        )
        assert (code, healthy["state"], healthy["retry_backlog"]) == (0, "active", 0)

        failing = True
        started = asyncio.get_running_loop().time()
        down = ("failing", "suspended")  # suspended: its breaker opened (agents/delivery/breaker.py)
        code, first = await _status_until(ops_bus, lambda c, r: r["state"] in down, 30, "failing")
        assert code == 1
        assert first["reason"] == "http.503" and first["consecutive_failures"] >= 5
        code, later = await _status_until(
            ops_bus,
            lambda c, r: r["state"] in down and r["retry_backlog"] > first["retry_backlog"],
            30 - (asyncio.get_running_loop().time() - started),
            "failing with a growing retry backlog",
        )
        assert code == 1 and later["failing_since"] == first["failing_since"]

        failing = False
        code, recovered = await _status_until(
            ops_bus, lambda c, r: r["state"] == "active" and r["retry_backlog"] == 0, 30, "recovered"
        )
        assert code == 0 and recovered["consecutive_failures"] == 0
        assert recovered["last_delivered"] > healthy["last_delivered"]
    finally:
        if flow is not None:
            flow.cancel()
        await receiver.stop()
