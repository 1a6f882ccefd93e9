"""A real `samband worker` serves /healthz, /readyz and /metrics on SAMBAND_WEB_PORT."""

from __future__ import annotations

import asyncio

import aiohttp
from kafka_io import create_topics, produce
from prometheus_client.parser import text_string_to_metric_families
from routing_events import encode, event, synthetic_number
from worker_process import WorkerProcess, wait_for_commits


async def _get_until(session, url: str, status: int, worker: WorkerProcess, timeout: float = 90.0) -> dict | str:
    """GET `url` until it answers `status`; return the body (JSON when it is JSON)."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = "no answer"
    while asyncio.get_running_loop().time() < deadline:
        if worker.process.poll() is not None:
            raise AssertionError(f"worker exited ({worker.process.returncode}):\n{worker.log_tail()}")
        try:
            async with session.get(url) as response:
                body = await (response.json() if response.content_type == "application/json" else response.text())
                if response.status == status:
                    return body
                last = f"{response.status} {body}"
        except aiohttp.ClientConnectionError as exc:
            last = repr(exc)
        await asyncio.sleep(0.2)  # poll interval inside the deadline
    raise AssertionError(f"{url} did not answer {status} within {timeout:.0f} s (last: {last}):\n{worker.log_tail()}")


async def test_worker_is_alive_then_ready_and_reports_its_consumer_lag_loop_lag_and_memory(
    kafka_bootstrap, worker_env, tmp_path
):
    app_id = worker_env["SAMBAND_APP_ID"]
    source = f"{app_id}-ingest"
    await create_topics(kafka_bootstrap, source)
    deaths = [event("Death", synthetic_number(1 + i, 2, 41, 200 + i), ["0301"]) for i in range(20)]
    await produce(kafka_bootstrap, source, [encode(e) for e in deaths])
    base = f"http://127.0.0.1:{worker_env['SAMBAND_WEB_PORT']}"

    worker = WorkerProcess(
        {**worker_env, "SAMBAND_READY_MAX_LAG": "0", "SAMBAND_HEAP_TRIM_SECONDS": "1"}, tmp_path / "worker.log"
    )
    worker.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            assert await _get_until(session, f"{base}/healthz", 200, worker) == {"status": "alive"}
            await wait_for_commits(kafka_bootstrap, f"{app_id}-ingest", 20, timeout=90, worker=worker)
            ready = await _get_until(session, f"{base}/readyz", 200, worker)
            assert ready["ready"] is True
            assert ready["lag"] == 0
            assert ready["assigned_partitions"] == 12  # the 4 partitions of each stage's topic
            text = await _get_until(session, f"{base}/metrics", 200, worker)
    finally:
        assert worker.stop() == 0, worker.log_tail()

    lag = {
        (s.labels["topic"], s.labels["partition"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "samband_consumer_lag" and s.labels["group"] == f"{app_id}-ingest"
    }
    assert {(source, str(p)) for p in range(4)} <= set(lag)
    assert all(value == 0 for value in lag.values())
    # the process's event loop is measured (agents/loop_lag.py) for as long as it runs
    [loop_lag] = [f for f in text_string_to_metric_families(text) if f.name == "samband_event_loop_lag_seconds"]
    assert next(s.value for s in loop_lag.samples if s.name.endswith("_count")) > 0
    # its C heap is trimmed every SAMBAND_HEAP_TRIM_SECONDS (agents/heap_trim.py), its memory shown
    samples = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples["samband_heap_trim_duration_seconds_count"] > 0
    assert samples["process_resident_memory_bytes"] > 50 * 1024 * 1024


async def _logged(worker: WorkerProcess, text: str, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while text not in worker.log_path.read_text():
        assert asyncio.get_running_loop().time() < deadline, f"{text!r} not logged:\n{worker.log_tail()}"
        assert worker.process.poll() is None, worker.log_tail()
        await asyncio.sleep(0.05)  # poll interval inside the deadline


async def test_a_worker_stopped_while_it_starts_exits_at_once(worker_env, tmp_path):
    """SIGTERM from a supervisor can come at any moment of the start. Before, services that began to
    start after the stop had passed them ran on, and the process ignored the signal for good."""
    for moment in ("Producer]: Starting", "RouteService]: Starting", "DeliveryService]: Starting"):
        worker = WorkerProcess(worker_env, tmp_path / f"worker-{moment.split(']')[0]}.log")
        worker.start()
        await _logged(worker, moment)
        assert worker.stop(timeout=20) == 0, f"stopped at {moment!r}:\n{worker.log_tail()}"
