"""Acceptance: `samband trace` on an event ingested, routed and delivered to 3 systems shows all 3
deliveries with their times and attempts (one needed a retry), and no personal data."""

from __future__ import annotations

import asyncio

from kafka_io import produce
from ops_bus import full_subscription
from routing_events import encode, event, synthetic_number
from samband_cli import samband
from webhook_receiver import Receiver, refuse_first_event

FAST = {"retry_schedule": [1, 1, 1], "read_timeout": 1.0, "connect_timeout": 0.5}
SYSTEMS = ("ops-trace-bergen", "ops-trace-nav", "ops-trace-skatt")
NUMBER = synthetic_number(3, 4, 51, 300)


async def _trace_until(bus, event_id: str, predicate, timeout: float) -> dict:
    loop = asyncio.get_running_loop()
    deadline, last = loop.time() + timeout, None
    while loop.time() < deadline:
        result = await samband(bus.bootstrap, "trace", event_id, "--json", env={"SAMBAND_APP_ID": bus.app_id})
        last = result
        if result.code == 0 and predicate(result.json()):
            return result
    raise AssertionError(f"trace not complete within {timeout:.0f} s: {last}")


async def test_trace_shows_all_three_deliveries_with_times_and_attempts(ops_bus):
    receivers = {
        sub: Receiver(ops_bus.secret, refuse_first_event()) if sub == SYSTEMS[1] else Receiver(ops_bus.secret)
        for sub in SYSTEMS
    }
    for receiver in receivers.values():
        await receiver.start()
    try:
        for sub, receiver in receivers.items():
            value = full_subscription(sub, receiver.url, ["4601"], ["Death"], {"Death": ["deathDate"]}, **FAST)
            await ops_bus.put_subscription(value)
        for receiver in receivers.values():
            await ops_bus.wait_for(receiver, receiver.verified, 60, "verified")
        death = event("Death", NUMBER, ["4601"])
        event_id = death["envelope"]["id"]
        await produce(ops_bus.bootstrap, ops_bus.topic("ingest"), [encode(death)], [event_id.encode()])
        for receiver in receivers.values():
            await ops_bus.wait_for(receiver, lambda r=receiver: len(r.events()) == 1, 60, "the death notice delivered")

        result = await _trace_until(
            ops_bus, event_id, lambda t: [d["status"] for d in t["deliveries"]] == ["delivered"] * 3, 30
        )
        text = await samband(ops_bus.bootstrap, "trace", event_id, env={"SAMBAND_APP_ID": ops_bus.app_id})
    finally:
        for receiver in receivers.values():
            await receiver.stop()

    trace = result.json()
    assert trace["found"] and trace["event_id"] == event_id
    assert trace["ingested_at"] is not None and trace["routed_at"] is not None
    assert trace["routed_to"] == sorted(SYSTEMS)
    deliveries = {d["subscription"]: d for d in trace["deliveries"]}
    assert sorted(deliveries) == sorted(SYSTEMS)
    assert {sub: d["attempts"] for sub, d in deliveries.items()} == {SYSTEMS[0]: 1, SYSTEMS[1]: 2, SYSTEMS[2]: 1}
    assert [a["outcome"] for a in deliveries[SYSTEMS[1]]["attempt_log"]] == ["retry", "delivered"]
    assert deliveries[SYSTEMS[1]]["attempt_log"][0]["reason"] == "http.503"
    for sub, receiver in receivers.items():
        arrived = receiver.events()[0].at
        delivered_at = deliveries[sub]["at"]
        assert delivered_at >= deliveries[sub]["attempt_log"][-1]["at"] >= trace["routed_at"]
        assert abs(_epoch(delivered_at) - arrived) < 5, (sub, delivered_at, arrived)
    assert trace["dead_letters"] == []
    assert text.code == 0 and all(f"{sub}: delivered" in text.stdout for sub in SYSTEMS)
    assert NUMBER not in result.stdout + text.stdout + result.stderr + text.stderr


async def test_trace_of_an_unknown_event_says_so_and_exits_1(ops_bus):
    result = await samband(ops_bus.bootstrap, "trace", "no-such-event", env={"SAMBAND_APP_ID": ops_bus.app_id})
    assert result.code == 1 and "not found" in result.stdout


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
