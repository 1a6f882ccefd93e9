"""/readyz measures each stage's lag on the worker's partitions against the real broker, and refuses above the bound
(the batch consumer groups `<app id>-ingest`, `<app id>-router`, `<app id>-delivery`).

The batch consumers are stand-ins giving only what readiness reads from them (group, assignment,
started/recovering/stopped); offsets, commits and lag are the real broker's. The last test asks a
real worker.
"""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka_io import produce

from agents.web.operations import add_routes


def _batch_consumer(group: str, assigned: set[TopicPartition] | None, recovering: bool = False, finished: bool = False):
    return SimpleNamespace(
        group=group, assigned=lambda: assigned, recovering=recovering, finished=finished, outage=None
    )


async def _commit(bootstrap: str, group: str, tp: TopicPartition, offset: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


async def _readyz(web_app: web.Application) -> tuple[int, dict]:
    async with TestClient(TestServer(web_app)) as client:
        response = await client.get("/readyz")
        return response.status, await response.json()


async def test_readiness_follows_the_committed_lag_of_a_stage(kafka_bootstrap, new_topic):
    group = f"ops-ready-{uuid.uuid4().hex[:8]}-ingest"
    source = await new_topic(prefix="ops-ready-in")
    await produce(kafka_bootstrap, source, [b"x"] * 5)
    await _commit(kafka_bootstrap, group, TopicPartition(source, 0), 2)
    stage = _batch_consumer(group, {TopicPartition(source, 0)})

    lagging = web.Application()
    add_routes(lagging, kafka_bootstrap, ready_max_lag=2, batch_consumers=lambda: [stage])
    status, body = await _readyz(lagging)
    assert status == 503
    assert body["lag"] == 3
    assert body["reasons"] == [f"{group}: lag 3 above 2"]

    within = web.Application()
    add_routes(within, kafka_bootstrap, ready_max_lag=3, batch_consumers=lambda: [stage])
    status, body = await _readyz(within)
    assert (status, body["ready"], body["lag"], body["assigned_partitions"]) == (200, True, 3, 1)


async def test_worker_without_partitions_is_not_ready(kafka_bootstrap):
    """A worker beyond the partition count holds none: it works for nobody, so it is not ready."""
    web_app = web.Application()
    stage = _batch_consumer("ops-ready-idle-ingest", set())
    add_routes(web_app, kafka_bootstrap, ready_max_lag=100, batch_consumers=lambda: [stage])
    status, body = await _readyz(web_app)
    assert status == 503
    assert body["reasons"] == ["no partitions assigned"]


async def test_a_worker_with_no_stage_started_is_not_ready(kafka_bootstrap):
    web_app = web.Application()
    add_routes(web_app, kafka_bootstrap, ready_max_lag=100, batch_consumers=list)
    status, body = await _readyz(web_app)
    assert (status, body["reasons"]) == (503, ["no stage started"])


async def test_readiness_also_bounds_the_lag_of_the_batch_consumer_groups(kafka_bootstrap, new_topic):
    app_id = f"ops-ready-{uuid.uuid4().hex[:8]}"
    ingest = await new_topic(prefix="ops-ready-ingest")
    events = await new_topic(prefix="ops-ready-events")
    await produce(kafka_bootstrap, ingest, [b"x"] * 6)
    await produce(kafka_bootstrap, events, [b"x"] * 3)
    await _commit(kafka_bootstrap, f"{app_id}-ingest", TopicPartition(ingest, 0), 1)  # 5 behind
    await _commit(kafka_bootstrap, f"{app_id}-router", TopicPartition(events, 0), 3)  # caught up
    consumers = [
        _batch_consumer(f"{app_id}-ingest", {TopicPartition(ingest, 0)}),
        _batch_consumer(f"{app_id}-router", {TopicPartition(events, 0)}),
    ]

    lagging = web.Application()
    add_routes(lagging, kafka_bootstrap, ready_max_lag=4, batch_consumers=lambda: consumers)
    status, body = await _readyz(lagging)
    assert status == 503
    assert body["reasons"] == [f"{app_id}-ingest: lag 5 above 4"]
    assert body["lag_by_group"] == {f"{app_id}-ingest": 5, f"{app_id}-router": 0}
    assert body["lag"] == 5

    within = web.Application()
    add_routes(within, kafka_bootstrap, ready_max_lag=5, batch_consumers=lambda: consumers)
    status, body = await _readyz(within)
    assert (status, body["ready"], body["lag"]) == (200, True, 5)


async def test_a_batch_consumer_not_started_recovering_or_stopped_makes_the_worker_not_ready(
    kafka_bootstrap, new_topic
):
    source = await new_topic(prefix="ops-ready-events")
    await produce(kafka_bootstrap, source, [b"x"])
    app_id = f"ops-ready-{uuid.uuid4().hex[:8]}"
    await _commit(kafka_bootstrap, f"{app_id}-ingest", TopicPartition(source, 0), 1)
    consumers = [
        _batch_consumer(f"{app_id}-ingest", {TopicPartition(source, 0)}),
        _batch_consumer(f"{app_id}-starting", None),
        _batch_consumer(f"{app_id}-router", set(), recovering=True),
        _batch_consumer(f"{app_id}-delivery", set(), finished=True),
    ]
    web_app = web.Application()
    add_routes(web_app, kafka_bootstrap, ready_max_lag=100, batch_consumers=lambda: consumers)
    status, body = await _readyz(web_app)
    assert status == 503
    assert body["reasons"] == [
        f"{app_id}-starting: consumer not started",
        f"{app_id}-router: recovering state",
        f"{app_id}-delivery: stopped",
    ]


async def test_a_real_worker_is_ready_with_the_lag_of_its_ingest_and_router_groups(ops_bus):
    deadline = asyncio.get_running_loop().time() + 60
    status, body = None, "no answer"
    async with aiohttp.ClientSession() as http:
        while status != 200 and asyncio.get_running_loop().time() < deadline:
            try:
                async with http.get(f"{ops_bus.web_url}/readyz") as response:
                    status, body = response.status, await response.json()
            except aiohttp.ClientConnectionError:  # the web server is not up yet
                pass
            if status != 200:
                await asyncio.sleep(0.2)  # poll interval inside the deadline
    assert status == 200, body
    assert {f"{ops_bus.app_id}-{stage}" for stage in ("ingest", "router", "delivery")} <= set(body["lag_by_group"]), (
        body
    )
