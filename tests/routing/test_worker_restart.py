"""A restarted worker resumes its stages from their committed offsets: each event is ingested once."""

from __future__ import annotations

from collections import Counter

from kafka_io import event_id, produce, read_to_end
from routing_events import encode, event, synthetic_number
from worker_process import WorkerProcess, wait_for_commits


def _events(first: int, count: int) -> list[dict]:
    return [
        event("Death", synthetic_number(1 + n % 28, 1 + n % 12, 40, 100 + n), ["0301"])
        for n in range(first, first + count)
    ]


async def test_a_restarted_worker_ingests_each_event_exactly_once(kafka_bootstrap, bus, bus_env, tmp_path):
    group = f"{bus_env['SAMBAND_APP_ID']}-ingest"
    first, second = _events(0, 50), _events(50, 50)

    worker = WorkerProcess(bus_env, tmp_path / "worker.log")
    await produce(kafka_bootstrap, bus.ingest, [encode(e) for e in first])
    worker.start()
    try:
        await wait_for_commits(kafka_bootstrap, group, 50, timeout=90, worker=worker)
    finally:
        assert worker.stop() == 0, worker.log_tail()

    # Written while no worker runs: the restarted worker must take exactly these.
    await produce(kafka_bootstrap, bus.ingest, [encode(e) for e in second])
    worker.start()
    try:
        await wait_for_commits(kafka_bootstrap, group, 100, timeout=90, worker=worker)
    finally:
        assert worker.stop() == 0, worker.log_tail()

    # Both stops were clean (the batch in progress committed), so nothing was ingested twice.
    ingested = Counter(event_id(r) for r in await read_to_end(kafka_bootstrap, bus.events))
    assert set(ingested) == {e["envelope"]["id"] for e in first + second}
    assert max(ingested.values()) == 1
