"""A failing endpoint is probed, not hammered (issue 14, finding 7): after repeated transient failures
a subscription is suspended, its deliveries wait and one probe goes out per interval; `samband
status` shows it suspended; the first probe that succeeds resumes it and nothing is lost. A real
worker, a real receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest
from delivery_bus import DeliveryBus, running_bus
from delivery_fixtures import delivery
from webhook_receiver import VALIDATION_TYPE, Receiver, Reply

from tests.operations.samband_cli import samband

PERSONS = 30


async def _logged(bus, text: str, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while text not in bus.worker.log_path.read_text():
        assert asyncio.get_running_loop().time() < deadline, f"{text!r} not logged:\n{bus.worker.log_tail()}"
        assert bus.worker.process.poll() is None, bus.worker.log_tail()
        await asyncio.sleep(0.1)  # poll interval inside the deadline


async def _state(bus) -> dict:
    result = await samband(bus.bootstrap, "status", "--json", "--interval", "0", env={"SAMBAND_APP_ID": bus.app_id})
    return {row["id"]: row for row in json.loads(result.stdout)["subscriptions"]}


async def test_a_failing_endpoint_is_probed_not_hammered_and_resumes_with_nothing_lost(kafka_bootstrap, tmp_path):
    down = [True]
    async with running_bus(
        kafka_bootstrap, tmp_path, SAMBAND_BREAKER_FAILURES="5", SAMBAND_BREAKER_PROBE_SECONDS="1"
    ) as bus:
        receiver = Receiver(bus.secret, lambda _n, e: Reply(500) if down and e["type"] != VALIDATION_TYPE else Reply())
        await receiver.start()
        try:
            await bus.subscribe("fragile", receiver.url, retry_schedule=[1] * 20)
            await bus.wait_for(receiver, receiver.verified, 60, "verified")
            await bus.send([delivery("fragile", f"{p:032x}", f"ev-{p}") for p in range(PERSONS)])
            await _logged(bus, '"event": "delivery.subscription_suspended"')
            suspended_at = len(receiver.received)
            # Without the breaker each of the 30 queues retries every second: ~90 requests in 3 s.
            with pytest.raises(AssertionError, match="not hammered"):
                await receiver.wait_for(lambda: len(receiver.received) > suspended_at + 6, 3.0, "hammered")
            row = (await _state(bus))["fragile"]
            assert (row["state"], row["reason"]) == ("suspended", "http.500"), row

            down.clear()  # the endpoint is back: the next probe succeeds and everything waiting goes out
            await bus.wait_for(
                receiver,
                lambda: {e.event["id"] for e in receiver.events()} >= {f"ev-{p}" for p in range(PERSONS)},
                90,
                "every event, once the endpoint is back",
            )
            await _logged(bus, '"event": "delivery.subscription_resumed"')
        finally:
            await receiver.stop()
        assert (await _state(bus))["fragile"]["state"] == "active"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def test_an_endpoint_that_stays_down_gets_every_delivery_probed_to_its_end_without_a_busy_worker(
    kafka_bootstrap, tmp_path
):
    """While suspended, a probe goes out per interval until every waiting delivery has used its
    attempts and is dead-lettered: none waits forever behind a probe whose outcome woke nothing.
    With nothing left to probe, the worker idles."""
    events = DeliveryBus.events_for("downhill", persons=8, per_person=2)
    async with running_bus(
        kafka_bootstrap, tmp_path, SAMBAND_BREAKER_FAILURES="3", SAMBAND_BREAKER_PROBE_SECONDS="0.2"
    ) as bus:
        receiver = Receiver(bus.secret, lambda _n, e: Reply(503) if e["type"] != VALIDATION_TYPE else Reply())
        await receiver.start()
        try:
            await bus.subscribe("downhill", receiver.url, retry_schedule=[0.2, 0.2])  # three attempts each
            await bus.wait_for(receiver, receiver.verified, 60, "verified")
            await bus.send(events)

            def attempts() -> Counter:
                return Counter(r.event["id"] for r in receiver.received if r.event["type"] != VALIDATION_TYPE)

            await bus.wait_for(
                receiver,
                lambda: attempts() == Counter({e["event"]["id"]: 3 for e in events}),
                60,
                "three attempts of every delivery, most of them probes",
            )
            await _logged(bus, '"event": "delivery.subscription_suspended"')
            # Their dead letters are written once the last attempt is decided.
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                listed = await samband(
                    bus.bootstrap, "dlq", "list", "--subscription", "downhill", env={"SAMBAND_APP_ID": bus.app_id}
                )
                if all(e["event"]["id"] in listed.stdout for e in events):
                    break
                assert asyncio.get_running_loop().time() < deadline, listed.stdout
            # Suspended with nothing to probe: the worker's event loop sleeps. A loop spinning on a probe
            # time already past used a whole core here.
            pid = bus.worker.process.pid
            before, started = _cpu_seconds(pid), time.monotonic()
            with pytest.raises(AssertionError, match="idle"):
                await receiver.wait_for(lambda: False, 3.0, "idle")  # a window to measure over
            used = (_cpu_seconds(pid) - before) / (time.monotonic() - started)
            assert used < 0.5, f"the worker used {used:.0%} of a core with nothing to do"
        finally:
            await receiver.stop()
