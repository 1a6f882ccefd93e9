"""pytest fixtures of the conformance kit (load with `pytest_plugins = ["connectors.testing.plugin"]`)."""

from __future__ import annotations

import os
import uuid

import pytest
import structlog

from bus import clients
from bus.topics import DEADLETTER, INGEST, ensure_table_topics, topic_names


@pytest.fixture(scope="session")
def connector_kafka(request) -> str:
    """Bootstrap servers of a real broker for connector tests."""
    explicit = os.environ.get("SAMBAND_KAFKA_BOOTSTRAP_SERVERS") or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if explicit:
        return explicit
    try:
        return request.getfixturevalue("kafka_bootstrap")  # the project's own broker fixture, if any
    except pytest.FixtureLookupError:
        from deploy.launcher import BrokerConfig

        return BrokerConfig.from_env().bootstrap_servers  # the local broker of `samband kafka up`


@pytest.fixture
async def connector_app_id(connector_kafka, monkeypatch):
    """A unique app id on a bus of one partition (SAMBAND_PARTITIONS=1, for the connector too), so
    the order of everything it wrote is total."""
    monkeypatch.setenv("SAMBAND_PARTITIONS", "1")
    name = f"conn-{uuid.uuid4().hex[:10]}"
    topics = topic_names(name)
    await ensure_table_topics(connector_kafka, name, [INGEST, DEADLETTER])
    admin = clients.admin(connector_kafka)
    await admin.start()
    try:
        yield name
    finally:
        existing = set(await admin.list_topics())
        await admin.delete_topics(
            [t for t in (topics.ingest, topics.deadletter, topics.connector_state) if t in existing]
        )
        await admin.close()


@pytest.fixture
def capture_connector_logs():
    """Every structlog event logged during the test, as dicts (structlog.testing.capture_logs)."""
    with structlog.testing.capture_logs() as captured:
        yield captured
