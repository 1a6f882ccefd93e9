"""A Faust agent in a consumer group resumes from its committed offsets after a worker restart."""

from __future__ import annotations

from kafka_io import create_topics, produce, read_to_end
from worker_process import WorkerProcess, wait_for_commits


async def test_restarted_worker_processes_each_message_exactly_once(kafka_bootstrap, worker_env, tmp_path):
    app_id = worker_env["SAMBAND_APP_ID"]
    source, sink = f"{app_id}-example-in", f"{app_id}-example-out"
    await create_topics(kafka_bootstrap, source, sink)
    first = [f"m{i}".encode() for i in range(50)]
    second = [f"m{i}".encode() for i in range(50, 100)]
    keys = [f"k{i % 7}".encode() for i in range(100)]

    worker = WorkerProcess(worker_env, tmp_path / "worker.log")
    await produce(kafka_bootstrap, source, first, keys[:50])
    worker.start()
    try:
        await wait_for_commits(kafka_bootstrap, app_id, 50, timeout=90, worker=worker)
    finally:
        assert worker.stop() == 0, worker.log_tail()

    # Written while no worker runs: the restarted worker must pick up exactly these.
    await produce(kafka_bootstrap, source, second, keys[50:])
    worker.start()
    try:
        await wait_for_commits(kafka_bootstrap, app_id, 100, timeout=90, worker=worker)
    finally:
        assert worker.stop() == 0, worker.log_tail()

    # The worker has stopped, so the sink is complete: exactly the 100 messages, none twice.
    relayed = [r.value for r in await read_to_end(kafka_bootstrap, sink)]
    assert sorted(relayed) == sorted(first + second)
