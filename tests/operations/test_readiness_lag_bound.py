"""/readyz measures the group's lag on the worker's partitions against the real broker, and refuses above the bound.

The Faust app is a stand-in giving only what readiness reads from it (its assignment, group id,
broker); offsets, commits and lag are the real broker's.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, TopicPartition
from yarl import URL

from kafka_io import produce
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
    add_routes(lagging, _app_assigned(kafka_bootstrap, group, assignment, {changelog}), ready_max_lag=2)
    status, body = await _readyz(lagging)
    assert status == 503
    assert body["lag"] == 3
    assert body["reasons"] == ["lag 3 above 2"]

    within = web.Application()
    add_routes(within, _app_assigned(kafka_bootstrap, group, assignment, {changelog}), ready_max_lag=3)
    status, body = await _readyz(within)
    assert (status, body["ready"], body["lag"], body["assigned_partitions"]) == (200, True, 3, 1)


async def test_worker_without_partitions_is_not_ready(kafka_bootstrap):
    web_app = web.Application()
    add_routes(web_app, _app_assigned(kafka_bootstrap, "ops-ready-idle", set(), set()), ready_max_lag=100)
    status, body = await _readyz(web_app)
    assert status == 503
    assert body["reasons"] == ["no partitions assigned"]
