"""Two workers share the delivery stage; one joins, leaves, joins again, and the other is killed (issue 14).

The short version of the two-worker fault run, kept in `make test`. A subscriber answers every
request after 50 ms, so each worker's lane holds many heads queued when its partitions move.
Each rebalance hands partitions over while attempts are on their way or queued. Before, a
worker kept sending the heads of partitions it had given up (they sat in its lanes), and an
attempt's outcome released a person's next event while that person's head was queued again:
an event could arrive after a later one of the same person. Now every arrival, repeats
included, keeps each person's order; nothing is lost, nothing wrong is sent.
"""

from __future__ import annotations

import asyncio
import json
import signal

from delivery_bus import DeliveryBus
from support import free_port
from webhook_receiver import Receiver, Reply
from worker_process import WorkerProcess

PERSONS, PER_PERSON = 200, 6
SUB = "handover"


def _holds_partitions(worker: WorkerProcess, since: int) -> bool:
    """The worker's delivery stage was last assigned at least one partition (its log after byte `since` says so)."""
    held = None
    with worker.log_path.open("rb") as log:
        log.seek(since)
        lines = log.read().decode(errors="replace").splitlines()
    for line in lines:
        if '"batch_partitions_assigned"' in line and "-delivery" in line:
            held = json.loads(line).get("partitions")
    return bool(held)


async def _until(condition, timeout: float, what: str, *workers: WorkerProcess) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        for worker in workers:
            assert worker.process.poll() is None, f"a worker exited while waiting for {what}:\n{worker.log_tail()}"
        assert asyncio.get_running_loop().time() < deadline, f"not {what} within {timeout:.0f} s"
        await asyncio.sleep(0.1)  # poll interval inside the deadline


def _arrival_order_breaks(receiver: Receiver) -> list[str]:
    """Every arrival counts, repeats too: a person's event after a later one of theirs is a break."""
    latest: dict[str, int] = {}
    breaks = []
    for received in receiver.events():
        person, seq = received.event["subject"], received.event.get_data()["seq"]
        if seq < latest.get(person, -1):
            breaks.append(f"person {person[:8]}: event {seq} arrived after event {latest[person]}")
        latest[person] = max(seq, latest.get(person, -1))
    return breaks


async def test_handovers_between_two_workers_lose_nothing_and_never_send_a_persons_event_after_a_later_one(
        kafka_bootstrap, worker_env, tmp_path):
    # A short session timeout, so the killed worker's partitions move to the other within the test.
    bus = DeliveryBus(kafka_bootstrap, {**worker_env, "SAMBAND_BROKER_SESSION_TIMEOUT": "10"}, tmp_path / "worker-1.log")
    second = WorkerProcess({**bus.worker.env, "SAMBAND_WEB_PORT": str(free_port()),
                            "SAMBAND_DATA_DIR": str(tmp_path / "worker-2-data")}, tmp_path / "worker-2.log")
    receiver = Receiver(bus.secret, lambda _n, _e: Reply(delay=0.05))
    await receiver.start()
    await bus.start()
    total = PERSONS * PER_PERSON
    delivered = lambda share: lambda: len(receiver.unique_ids) >= total * share  # noqa: E731
    try:
        await bus.subscribe(SUB, receiver.url, max_concurrency=4, retry_schedule=[0.2, 0.5, 1, 1, 1])
        records = bus.events_for(SUB, PERSONS, PER_PERSON)
        await bus.send(records)
        await _until(delivered(0.1), 120, "a tenth delivered", bus.worker)

        second.start()  # joins: the first hands half its partitions over
        await _until(lambda: _holds_partitions(second, 0), 60, "the second worker assigned partitions", bus.worker, second)
        await _until(delivered(0.3), 120, "three tenths delivered", bus.worker, second)
        assert second.stop(signal.SIGTERM) == 0  # leaves: hands them back
        await _until(delivered(0.45), 120, "nearly half delivered", bus.worker)

        restarted = second.log_path.stat().st_size
        second.start()
        await _until(lambda: _holds_partitions(second, restarted), 60, "the second worker assigned partitions again", bus.worker, second)
        await _until(delivered(0.6), 120, "six tenths delivered", bus.worker, second)
        bus.worker.stop(signal.SIGKILL)  # the other takes its partitions after the session timeout
        await _until(delivered(1.0), 180, "every event delivered", second)
    finally:
        second.stop()
        await bus.stop()
        await receiver.stop()
    assert receiver.unique_ids == {r["idempotency_key"] for r in records}  # nothing lost
    assert all(e.webhook_id == f"{e.event['id']}.{SUB}" for e in receiver.events())  # nothing wrong
    assert _arrival_order_breaks(receiver) == []
