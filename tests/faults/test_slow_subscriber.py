"""A slow subscriber holds back only itself: a kill -9 then re-sends almost nothing to the others (issue 14, finding 2).

One subscriber answers every request after 2 s, the other at once. Before, the slow one's
queued deliveries stayed open in memory and held the commit point of every deliveries
partition, so a kill -9 re-sent nearly every event to the healthy subscriber (98 % in the fault
run). Now a queue open longer than SAMBAND_DELIVERY_STORE_AFTER_SECONDS (2 s) moves to the
pending topic and the commit point moves on: the healthy subscriber gets at most 1 % again, and
the slow one still gets everything, each person's events in order. Both subscriptions run at a
memory limit of 100 deliveries, so each also leaves records in the topic and takes them back.
"""

from __future__ import annotations

import asyncio
import signal

from delivery_bus import DeliveryBus
from fault_counts import count, subject_and_seq
from kafka_io import read_to_end
from webhook_receiver import Receiver, Reply
from worker_process import wait_for_commits

PERSONS, PER_PERSON = 100, 10


async def _until_nothing_pending(bus: DeliveryBus, sub: str, timeout: float) -> None:
    """Until the pending topic holds no queue of `sub` (the newest record of each key a deletion)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        latest = {r.key: r.value for r in await read_to_end(bus.bootstrap, bus.topic("delivery-pending"))}
        left = [k for k, v in latest.items() if v is not None and k.startswith(f"{sub}/".encode())]
        if not left:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{len(left)} queues of {sub} still pending"
        await asyncio.sleep(0.2)  # poll interval inside the deadline


async def test_after_a_kill_with_a_slow_subscriber_the_healthy_one_gets_at_most_one_percent_again(
    kafka_bootstrap, worker_env, tmp_path
):
    # A memory limit of 100 deliveries per subscription: both go behind it (the burst is 1,000 each)
    # and take their records back from the topic, the slow one across the kill.
    env = {**worker_env, "SAMBAND_BROKER_SESSION_TIMEOUT": "10", "SAMBAND_DELIVERY_MEMORY_PER_SUBSCRIPTION": "100"}
    bus = DeliveryBus(kafka_bootstrap, env, tmp_path / "worker.log")
    slow_now = [True]
    slow = Receiver(bus.secret, lambda _n, _e: Reply(delay=2.0 if slow_now[0] else 0.0))
    healthy = Receiver(bus.secret)
    for receiver in (slow, healthy):
        await receiver.start()
    await bus.start()
    total = PERSONS * PER_PERSON
    try:
        await bus.subscribe("slow", slow.url, max_concurrency=2, read_timeout=5)
        await bus.subscribe("healthy", healthy.url)
        for receiver in (slow, healthy):  # active first, so the slow one's deliveries start in memory
            await bus.wait_for(receiver, receiver.verified, 60, "the subscriber verified")
        sent = {sub: bus.events_for(sub, PERSONS, PER_PERSON) for sub in ("slow", "healthy")}
        await bus.send(sent["slow"] + sent["healthy"])
        await bus.wait_for(
            healthy, lambda: len(healthy.unique_ids) >= total, 120, "every event at the healthy subscriber"
        )
        # The slow subscriber's backlog no longer holds the commit back: every record is committed,
        # and nothing of the healthy one's is pending (what it took back from the topic, once
        # delivered, is deleted from the pending topic in the next write cycle).
        await wait_for_commits(bus.bootstrap, f"{bus.app_id}-delivery", 2 * total, 30, bus.worker)
        await _until_nothing_pending(bus, "healthy", 30)
        assert len(slow.unique_ids) < total / 4  # it is still far behind
        bus.worker.stop(signal.SIGKILL)
        before = len(healthy.events())
        slow_now[0] = False
        bus.worker.start()
        await bus.wait_for(slow, lambda: len(slow.unique_ids) >= total, 180, "every event at the slow subscriber")
    finally:
        await bus.stop()
        for receiver in (slow, healthy):
            await receiver.stop()
    counts = count(
        "a subscriber answering in 2 s, the worker killed (kill -9)",
        {sub: {r["idempotency_key"] for r in records} for sub, records in sent.items()},
        {"slow": slow.events(), "healthy": healthy.events()},
        subject_and_seq,
    ).report()
    assert (counts.lost, counts.wrong, counts.out_of_order) == (0, 0, 0), counts
    again = len(healthy.events()) - before
    print(f"\nthe healthy subscriber got {again} of {total} events again after the kill")
    assert before == total and again <= total // 100, f"the healthy subscriber got {again} of {total} again"
