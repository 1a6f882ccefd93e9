"""Isolation and long outages, against real receivers and a real worker.

Durations are scaled down by configuration so the module runs in about a minute: the
failing subscriber answers 500 for 10 s (not 2 minutes), retry schedules are in tenths of
seconds, read timeouts are 0.5 s, and a subscriber whose breaker opens is probed every second
(not every 30).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest
from delivery_bus import assert_in_order_per_person, running_bus
from webhook_receiver import VALIDATION_TYPE, Receiver, Reply

from bus.reading import read_topic

# About 170 deliveries/s: well within one worker's capacity even on a busy 2-core machine,
# so latency differences come from the bad subscribers, not from saturation.
HEALTHY, PERSONS, ROUNDS = 17, 5, 10
BAD_FOR = 10.0  # seconds the bad subscribers misbehave
REPETITIONS = 3  # runs of each kind, alternating
BAD_SETTINGS = {"retry_schedule": [0.5, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2], "read_timeout": 0.5, "connect_timeout": 0.5}


@pytest.fixture(scope="module")
async def bus(kafka_bootstrap, tmp_path_factory):
    async with running_bus(
        kafka_bootstrap, tmp_path_factory.mktemp("delivery-isolation"), SAMBAND_BREAKER_PROBE_SECONDS="1"
    ) as bus:
        # Warm-up: once one event has gone through, the worker owns its partitions and latencies are its own.
        receiver = Receiver(bus.secret)
        await bus.subscribe("warm-up", await receiver.start())
        await bus.send(bus.events_for("warm-up", 1, 1))
        await bus.wait_for(receiver, lambda: len(receiver.events()) >= 1, 60, "the warm-up event")
        await receiver.stop()
        yield bus


def _misbehaving(reply: Reply, until: list[float]):
    def behaviour(_n, event):
        if event["type"] == VALIDATION_TYPE or time.time() >= until[0]:
            return Reply()
        return reply

    return behaviour


async def _run(bus, name: str, bad: dict[str, Reply]) -> tuple[list[float], dict[str, Receiver]]:
    """Paced load to HEALTHY healthy subscribers (and the `bad` ones); the healthy ones' latencies."""
    healthy = {f"{name}-ok-{i}": Receiver(bus.secret) for i in range(HEALTHY)}
    until = [float("inf")]
    misbehaving = {f"{name}-{kind}": Receiver(bus.secret, _misbehaving(reply, until)) for kind, reply in bad.items()}
    for sub, receiver in {**healthy, **misbehaving}.items():
        await receiver.start()
        await bus.subscribe(sub, receiver.url, **BAD_SETTINGS)
    for receiver in {**healthy, **misbehaving}.values():
        await bus.wait_for(receiver, receiver.verified, 30, "verified")
    until[0] = time.time() + BAD_FOR
    subs = [*healthy, *misbehaving]
    for round_number in range(ROUNDS):
        records = []
        for sub in subs:
            for record in bus.events_for(sub, PERSONS, 1, prefix=f"r{round_number}"):
                record["event"]["data"].update(seq=round_number, sent_at=time.time())
                records.append(record)
        await bus.send(records)
        await asyncio.sleep(0.5)  # pacing the load generator, not waiting for an outcome
    expected = PERSONS * ROUNDS
    for receiver in healthy.values():
        await bus.wait_for(receiver, lambda r=receiver: len(r.unique_ids) >= expected, 60, "all events")
    latencies = sorted(r.at - r.event.get_data()["sent_at"] for receiver in healthy.values() for r in receiver.events())
    return latencies, {**healthy, **misbehaving}


def _p99(values: list[float]) -> float:
    return values[min(len(values) - 1, int(len(values) * 0.99))]


async def test_bad_subscribers_do_not_slow_the_healthy_ones_and_catch_up_in_order(bus):
    bad = {"down": Reply(500), "slow": Reply(delay=3.0), "throttled": Reply(429, headers={"Retry-After": "1"})}
    # Runs alternate, so a slow spell of the shared machine does not fall on one kind only.
    base_p99s, bad_p99s, receivers = [], [], {}
    expected = PERSONS * ROUNDS
    try:
        for repetition in range(REPETITIONS):
            baseline, healthy = await _run(bus, f"base{repetition}", {})
            with_bad, more = await _run(bus, f"bad{repetition}", bad)
            receivers.update(healthy | more)
            base_p99s.append(_p99(baseline))
            bad_p99s.append(_p99(with_bad))
            # The bad ones catch up before the next run without them starts.
            for kind in bad:
                receiver = receivers[f"bad{repetition}-{kind}"]
                await bus.wait_for(
                    receiver, lambda r=receiver: len(r.unique_ids) >= expected, 60, f"the {kind} subscriber caught up"
                )
    finally:
        for receiver in receivers.values():
            await receiver.stop()
    # The lowest p99 of each kind is compared. A bad subscriber that held back a healthy one
    # would add at least its read timeout (0.5 s) or a retry delay in every run with it; a stall
    # of the shared machine (another test starting a broker, a GC pause) hits some runs only, and
    # in CI it hit two of three runs beside the bad ones (248 and 335 ms against 82 ms).
    base_p99, bad_p99 = min(base_p99s), min(bad_p99s)
    print(
        f"healthy p99 (lowest of {REPETITIONS}): {base_p99 * 1000:.1f} ms alone, {bad_p99 * 1000:.1f} ms beside the bad ones"
    )
    # 2x, with 50 ms of slack for scheduling noise on a shared 2-core machine at millisecond latencies.
    assert bad_p99 <= max(2 * base_p99, base_p99 + 0.05), (base_p99s, bad_p99s)
    for repetition, (kind, reply) in itertools.product(range(REPETITIONS), bad.items()):
        receiver = receivers[f"bad{repetition}-{kind}"]
        assert any(r.status == reply.status for r in receiver.received if reply.status != 204) or kind == "slow"
        # A subscriber that answers after our timeout may have taken the event anyway: it gets it
        # again with the same webhook-id, so first arrivals are what must be in order.
        assert_in_order_per_person(receiver.events(), PERSONS, ROUNDS, first_arrivals=True)
        if kind == "slow":
            assert len(receiver.received) > len(receiver.unique_ids)  # it did time out and was retried


async def test_subscriber_down_through_several_retries_gets_everything_in_order(bus):
    receiver = Receiver(bus.secret)
    url = await receiver.start()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    await bus.subscribe(
        "outage", url, retry_schedule=[0.2, 0.4, 0.8, 1.6, 3.2, 6.4], connect_timeout=0.5, read_timeout=0.5
    )
    await bus.wait_for(receiver, receiver.verified, 30, "verified")
    await receiver.stop()  # the subscriber goes down: connections are refused
    await bus.send(bus.events_for("outage", persons=5, per_person=4, prefix="out"))
    await _wait_retries(bus, "out-0-0.outage", at_least=3)
    await receiver.start(port)  # back on the same address
    try:
        await bus.wait_for(receiver, lambda: len(receiver.unique_ids) >= 20, 30, "every event after the outage")
    finally:
        await receiver.stop()
    assert_in_order_per_person(receiver.events(), persons=5, per_person=4)


async def _wait_retries(bus, idempotency_key: str, at_least: int, timeout: float = 30.0) -> None:
    """Until the outcomes topic shows `at_least` failed attempts of one delivery."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        failed = [
            r
            async for r in read_topic(bus.bootstrap, bus.topic("delivery-outcomes"))
            if json.loads(r.value)["idempotency_key"] == idempotency_key and json.loads(r.value)["status"] == "retry"
        ]
        if len(failed) >= at_least:
            assert {json.loads(r.value)["reason"] for r in failed} == {"delivery.connection"}
            return
        await asyncio.sleep(0.2)  # poll interval inside a deadline
    raise AssertionError(f"{idempotency_key}: fewer than {at_least} failed attempts within {timeout:.0f} s")
