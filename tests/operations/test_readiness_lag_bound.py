"""/readyz measures each group's lag on the worker's partitions against the real broker, and refuses above the bound:
the Faust consumer's group and the hot path's batch consumer groups (`<app id>-ingest`, `<app id>-router`).

The Faust app and the batch consumers are stand-ins giving only what readiness reads from them
(assignment, group id, broker, started/recovering); offsets, commits and lag are the real
broker's. The last test asks a real worker.
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
from yarl import URL

from agents.web.operations import add_routes


def _app_assigned(bootstrap: str, group: str, assignment: set[TopicPartition], changelogs: set[str]):
    return SimpleNamespace(
        conf=SimpleNamespace(id=group, broker=[URL(f"kafka://{bootstrap}")]),
        consumer=SimpleNamespace(assignment=lambda: assignment),
        tables=SimpleNamespace(changelog_topics=changelogs),
        rebalancing=False,
        in_recovery=False,
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


async def test_readiness_follows_committed_lag_and_ignores_table_changelogs(kafka_bootstrap, new_topic):
    group = f"ops-ready-{uuid.uuid4().hex[:8]}"
    source = await new_topic(prefix="ops-ready-in")
    changelog = await new_topic(prefix="ops-ready-changelog")
    await produce(kafka_bootstrap, source, [b"x"] * 5)
    await produce(kafka_bootstrap, changelog, [b"y"] * 50)  # never committed by the group: not lag
    await _commit(kafka_bootstrap, group, TopicPartition(source, 0), 2)
    assignment = {TopicPartition(source, 0), TopicPartition(changelog, 0)}

    lagging = web.Application()
    add_routes(
        lagging, _app_assigned(kafka_bootstrap, group, assignment, {changelog}), ready_max_lag=2, batch_consumers=list
    )
    status, body = await _readyz(lagging)
    assert status == 503
    assert body["lag"] == 3
    assert body["reasons"] == [f"{group}: lag 3 above 2"]

    within = web.Application()
    add_routes(
        within, _app_assigned(kafka_bootstrap, group, assignment, {changelog}), ready_max_lag=3, batch_consumers=list
    )
    status, body = await _readyz(within)
    assert (status, body["ready"], body["lag"], body["assigned_partitions"]) == (200, True, 3, 1)


async def test_worker_without_partitions_is_not_ready(kafka_bootstrap):
    web_app = web.Application()
    add_routes(
        web_app, _app_assigned(kafka_bootstrap, "ops-ready-idle", set(), set()), ready_max_lag=100, batch_consumers=list
    )
    status, body = await _readyz(web_app)
    assert status == 503
    assert body["reasons"] == ["no partitions assigned"]


async def test_a_worker_holding_only_stage_partitions_is_ready(kafka_bootstrap, new_topic):
    """A second worker may hold partitions of the stages' groups and none of Faust's: it works, so it is ready."""
    deliveries = await new_topic(prefix="ops-ready-deliveries")
    web_app = web.Application()
    stage = _batch_consumer("ops-ready-only-delivery", {TopicPartition(deliveries, 0)})
    add_routes(
        web_app,
        _app_assigned(kafka_bootstrap, "ops-ready-only", set(), set()),
        ready_max_lag=100,
        batch_consumers=lambda: [stage],
    )
    status, body = await _readyz(web_app)
    assert (status, body["assigned_partitions"], body["reasons"]) == (200, 1, [])


def _batch_consumer(group: str, assigned: set[TopicPartition] | None, recovering: bool = False, finished: bool = False):
    return SimpleNamespace(
        group=group, assigned=lambda: assigned, recovering=recovering, finished=finished, outage=None
    )


async def test_readiness_also_bounds_the_lag_of_the_batch_consumer_groups(kafka_bootstrap, new_topic):
    app_id = f"ops-ready-{uuid.uuid4().hex[:8]}"
    faust_in = await new_topic(prefix="ops-ready-faust")
    ingest = await new_topic(prefix="ops-ready-ingest")
    events = await new_topic(prefix="ops-ready-events")
    await produce(kafka_bootstrap, faust_in, [b"x"] * 2)
    await produce(kafka_bootstrap, ingest, [b"x"] * 6)
    await produce(kafka_bootstrap, events, [b"x"] * 3)
    await _commit(kafka_bootstrap, app_id, TopicPartition(faust_in, 0), 2)  # Faust's group: caught up
    await _commit(kafka_bootstrap, f"{app_id}-ingest", TopicPartition(ingest, 0), 1)  # 5 behind
    await _commit(kafka_bootstrap, f"{app_id}-router", TopicPartition(events, 0), 3)  # caught up
    app = _app_assigned(kafka_bootstrap, app_id, {TopicPartition(faust_in, 0)}, set())
    consumers = [
        _batch_consumer(f"{app_id}-ingest", {TopicPartition(ingest, 0)}),
        _batch_consumer(f"{app_id}-router", {TopicPartition(events, 0)}),
    ]

    lagging = web.Application()
    add_routes(lagging, app, ready_max_lag=4, batch_consumers=lambda: consumers)
    status, body = await _readyz(lagging)
    assert status == 503
    assert body["reasons"] == [f"{app_id}-ingest: lag 5 above 4"]
    assert body["lag_by_group"] == {app_id: 0, f"{app_id}-ingest": 5, f"{app_id}-router": 0}
    assert body["lag"] == 5

    within = web.Application()
    add_routes(within, app, ready_max_lag=5, batch_consumers=lambda: consumers)
    status, body = await _readyz(within)
    assert (status, body["ready"], body["lag"]) == (200, True, 5)


async def test_a_batch_consumer_not_started_recovering_or_stopped_makes_the_worker_not_ready(
    kafka_bootstrap, new_topic
):
    source = await new_topic(prefix="ops-ready-faust")
    await produce(kafka_bootstrap, source, [b"x"])
    app_id = f"ops-ready-{uuid.uuid4().hex[:8]}"
    await _commit(kafka_bootstrap, app_id, TopicPartition(source, 0), 1)
    consumers = [
        _batch_consumer(f"{app_id}-ingest", None),
        _batch_consumer(f"{app_id}-router", set(), recovering=True),
        _batch_consumer(f"{app_id}-delivery", set(), finished=True),
    ]
    web_app = web.Application()
    add_routes(
        web_app,
        _app_assigned(kafka_bootstrap, app_id, {TopicPartition(source, 0)}, set()),
        ready_max_lag=100,
        batch_consumers=lambda: consumers,
    )
    status, body = await _readyz(web_app)
    assert status == 503
    assert body["reasons"] == [
        f"{app_id}-ingest: consumer not started",
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
    assert {ops_bus.app_id, f"{ops_bus.app_id}-ingest", f"{ops_bus.app_id}-router"} <= set(body["lag_by_group"]), body
