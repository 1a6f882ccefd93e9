"""A paused subscription's backlog waits in the deliveries topic, not in the worker's memory (issue 14).

Before, every delivery for a paused, failing or slow subscriber was kept in the worker's memory
(about 9 KB each) for as long as it waited. Now a subscription holds at most
SAMBAND_DELIVERY_MEMORY_PER_SUBSCRIPTION (here 20) and leaves the rest in the topic; its records
are committed all the same, and when it has room again it takes them, each person's in order.
A kill -9 while it is behind loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import aiohttp
from delivery_bus import DeliveryBus
from fault_counts import count, subject_and_seq
from kafka_io import read_to_end
from prometheus_client.parser import text_string_to_metric_families
from webhook_receiver import Receiver
from worker_process import wait_for_commits

LIMIT, PERSONS, PER_PERSON = 20, 60, 5


async def _gauges(port: str, sub: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in ("samband_delivery_in_memory", "samband_delivery_left_in_topic")
        and sample.labels.get("subscription") == sub
    }


async def _watch_in_memory(port: str, sub: str, seen: list[float], stop: asyncio.Event) -> None:
    """Every reading of the held gauge until `stop` (the worker may be down for a moment)."""
    while not stop.is_set():
        try:
            if (held := (await _gauges(port, sub)).get("samband_delivery_in_memory")) is not None:
                seen.append(held)
        except aiohttp.ClientError:
            pass
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)  # a reading every 0.1 s


async def test_a_paused_subscriptions_backlog_is_left_in_the_topic_and_delivered_in_order_after_a_kill(
    kafka_bootstrap, worker_env, tmp_path
):
    env = {**worker_env, "SAMBAND_BROKER_SESSION_TIMEOUT": "10", "SAMBAND_DELIVERY_MEMORY_PER_SUBSCRIPTION": str(LIMIT)}
    bus = DeliveryBus(kafka_bootstrap, env, tmp_path / "worker.log")
    port = env["SAMBAND_WEB_PORT"]
    paused, healthy = Receiver(bus.secret), Receiver(bus.secret)
    for receiver in (paused, healthy):
        await receiver.start()
    await bus.start()
    total = PERSONS * PER_PERSON
    held: list[float] = []
    stop_watching = asyncio.Event()
    watcher = asyncio.create_task(_watch_in_memory(port, "paused", held, stop_watching))
    try:
        await bus.subscribe("paused", paused.url, paused=True)
        await bus.subscribe("healthy", healthy.url)
        await bus.wait_for(healthy, healthy.verified, 60, "the healthy subscriber verified")
        sent = {sub: bus.events_for(sub, PERSONS, PER_PERSON) for sub in ("paused", "healthy")}
        await bus.send(sent["paused"] + sent["healthy"])
        await bus.wait_for(healthy, lambda: len(healthy.unique_ids) >= total, 120, "every event at the healthy one")
        # Every record is committed, the paused subscription's too: nothing it waits for is open.
        await wait_for_commits(bus.bootstrap, f"{bus.app_id}-delivery", 2 * total, 60, bus.worker)
        gauges = await _gauges(port, "paused")
        assert gauges == {"samband_delivery_in_memory": LIMIT, "samband_delivery_left_in_topic": total - LIMIT}, gauges

        bus.worker.stop(signal.SIGKILL)  # behind, with its cursor in the pending topic
        bus.worker.start()
        await bus.subscribe("paused", paused.url)  # resumed: it takes its backlog as it gets room
        await bus.wait_for(paused, lambda: len(paused.unique_ids) >= total, 180, "every event at the paused one")
    finally:
        stop_watching.set()
        await watcher
        await bus.stop()
        for receiver in (paused, healthy):
            await receiver.stop()
    counts = count(
        "a paused subscription behind its memory limit, the worker killed (kill -9)",
        {sub: {r["idempotency_key"] for r in records} for sub, records in sent.items()},
        {"paused": paused.events(), "healthy": healthy.events()},
        subject_and_seq,
    ).report()
    assert (counts.lost, counts.wrong, counts.out_of_order) == (0, 0, 0), counts
    assert held and max(held) <= LIMIT, f"held in memory: up to {max(held, default=None)} (limit {LIMIT})"


async def test_many_paused_subscriptions_hold_the_workers_limit_between_them_and_a_healthy_one_goes_on(
    kafka_bootstrap, worker_env, tmp_path
):
    """SAMBAND_DELIVERY_MEMORY_PER_WORKER: two paused subscriptions far below their own limit (1,000)
    hold the process's limit (30) between them and leave the rest in the topic; the healthy one is
    never held back (it never has a cursor in the pending topic), and once resumed the paused ones
    get theirs."""
    worker_limit = 30
    env = {
        **worker_env,
        "SAMBAND_DELIVERY_MEMORY_PER_SUBSCRIPTION": "1000",
        "SAMBAND_DELIVERY_MEMORY_PER_WORKER": str(worker_limit),
    }
    bus = DeliveryBus(kafka_bootstrap, env, tmp_path / "worker.log")
    port = env["SAMBAND_WEB_PORT"]
    subs = ("paused-a", "paused-b", "healthy")
    receivers = {sub: Receiver(bus.secret) for sub in subs}
    for receiver in receivers.values():
        await receiver.start()
    await bus.start()
    total = PERSONS * PER_PERSON
    try:
        for sub in subs:
            await bus.subscribe(sub, receivers[sub].url, paused=sub != "healthy")
        healthy = receivers["healthy"]
        await bus.wait_for(healthy, healthy.verified, 60, "the healthy subscriber verified")
        sent = {sub: bus.events_for(sub, PERSONS, PER_PERSON) for sub in subs}
        await bus.send([record for sub in subs for record in sent[sub]])
        await bus.wait_for(healthy, lambda: len(healthy.unique_ids) >= total, 120, "every event at the healthy one")
        await wait_for_commits(bus.bootstrap, f"{bus.app_id}-delivery", 3 * total, 60, bus.worker)
        deadline = asyncio.get_running_loop().time() + 30
        while True:  # the gauges are set about once a second
            gauges = {sub: await _gauges(port, sub) for sub in subs}
            paused = [gauges[sub] for sub in ("paused-a", "paused-b")]
            counted = sum(
                g.get("samband_delivery_in_memory", 0) + g.get("samband_delivery_left_in_topic", 0) for g in paused
            )
            if counted == 2 * total or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)  # poll interval inside the deadline
        assert counted == 2 * total, gauges
        # at most the limit, and the one record each may take once the process holds it
        assert sum(g["samband_delivery_in_memory"] for g in paused) <= worker_limit + 2, gauges
        # the healthy one never fell behind: the pending topic never held a cursor of its
        pending = await read_to_end(bus.bootstrap, bus.topic("delivery-pending"))
        behind = {record.key.decode() for record in pending if record.key.endswith(b"/~behind")}
        assert behind == {"paused-a/~behind", "paused-b/~behind"}, behind

        for sub in ("paused-a", "paused-b"):
            await bus.subscribe(sub, receivers[sub].url)
        for sub in ("paused-a", "paused-b"):
            receiver = receivers[sub]
            await bus.wait_for(receiver, lambda r=receiver: len(r.unique_ids) >= total, 180, f"every event at {sub}")
    finally:
        await bus.stop()
        for receiver in receivers.values():
            await receiver.stop()
    counts = count(
        "two paused subscriptions at the worker's memory limit, then resumed",
        {sub: {r["idempotency_key"] for r in records} for sub, records in sent.items()},
        {sub: receiver.events() for sub, receiver in receivers.items()},
        subject_and_seq,
    ).report()
    assert (counts.lost, counts.wrong, counts.out_of_order) == (0, 0, 0), counts
