"""kill -9 of the worker mid-delivery: after a restart every subscriber has every event.

Scaled down for a 2-core test machine: 1,000 events to each of 10 subscribers (10,000
deliveries), not 20,000 to each. The worker runs with a 10 s consumer session
timeout so the broker hands the killed worker's partitions to the restarted one soon.
"""

from __future__ import annotations

import signal

from delivery_bus import DeliveryBus, assert_in_order_per_person
from webhook_receiver import Receiver

SUBSCRIBERS, PERSONS, PER_PERSON = 10, 100, 10


async def test_crash_mid_delivery_loses_nothing_and_duplicates_keep_their_webhook_id(
    kafka_bootstrap, worker_env, tmp_path
):
    # A short session timeout lets the restarted worker take over the killed one's partitions soon.
    bus = DeliveryBus(kafka_bootstrap, {**worker_env, "SAMBAND_BROKER_SESSION_TIMEOUT": "10"}, tmp_path / "worker.log")
    receivers = [Receiver(bus.secret) for _ in range(SUBSCRIBERS)]
    for receiver in receivers:
        await receiver.start()
    await bus.start()
    total = PERSONS * PER_PERSON
    try:
        records = []
        for i, receiver in enumerate(receivers):
            await bus.subscribe(f"crash-{i}", receiver.url, retry_schedule=[0.2, 0.5, 1, 1, 1], read_timeout=2)
            records += bus.events_for(f"crash-{i}", PERSONS, PER_PERSON)
        await bus.send(records)
        await bus.wait_for(receivers[0], lambda: len(receivers[0].unique_ids) >= total // 4, 120, "a quarter delivered")
        bus.worker.stop(signal.SIGKILL)
        before = sum(len(r.events()) for r in receivers)
        bus.worker.start()
        for receiver in receivers:
            await bus.wait_for(receiver, lambda r=receiver: len(r.unique_ids) >= total, 180, "every event")
    finally:
        await bus.stop()
        for receiver in receivers:
            await receiver.stop()
    assert before < SUBSCRIBERS * total  # the kill did interrupt delivery
    expected = {r["idempotency_key"] for r in records}
    assert set().union(*(r.unique_ids for r in receivers)) == expected
    for i, receiver in enumerate(receivers):
        # A duplicate is the same delivery again: the same webhook-id for the same event and subscriber.
        assert all(e.webhook_id == f"{e.event['id']}.crash-{i}" for e in receiver.events())
    for receiver in receivers:
        assert_in_order_per_person(receiver.events(), PERSONS, PER_PERSON, first_arrivals=True)
