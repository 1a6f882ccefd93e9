"""Fixtures for the bus tests: a `samband worker` environment and its topics, on the real broker."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from bus_settings import API_TOKEN, PSEUDONYM_KEY, READ_TOKEN

from bus.topics import TopicNames, topic_names


@pytest.fixture
def bus_env(worker_env):
    return {
        **worker_env,
        "SAMBAND_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "SAMBAND_INGEST_MAX_BYTES": "4096",
        "SAMBAND_BROKER_SESSION_TIMEOUT": "8",  # a killed worker's partitions move on quickly
        # Tokens without a tenant own nothing: these act on every subscription as operators.
        "SAMBAND_API_TOKENS": f"{API_TOKEN}=subscriptions:read+subscriptions:write+subscriptions:operator,"
        f"{READ_TOKEN}=subscriptions:read+subscriptions:operator",
    }


@pytest.fixture
async def bus(kafka_bootstrap, bus_env) -> TopicNames:
    """The bus topics of this test's app id, created with the app's partition count; deleted afterwards."""
    topics = topic_names(bus_env["SAMBAND_APP_ID"])
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    names = [topics.ingest, topics.events, topics.deadletter, topics.deliveries]
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=4, replication_factor=1) for n in names]
            + [NewTopic(topics.subscriptions, 1, 1, topic_configs={"cleanup.policy": "compact"})]
        )
        yield topics
    finally:
        existing = set(await admin.list_topics())
        await admin.delete_topics([t for t in existing if t.startswith(bus_env["SAMBAND_APP_ID"])])
        await admin.close()
