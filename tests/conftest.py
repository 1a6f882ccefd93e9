"""Session-wide test harness: a real Kafka broker and uniquely named topics.

The broker comes from, in order: KAFKA_BOOTSTRAP_SERVERS; a testcontainers broker when a
Docker engine answers; otherwise a fresh broker of the session's own from the project's local
launcher (tests/session_broker.py), stopped and deleted at the end. When the suite runs
in several processes (pytest-xdist, `make test`), the controlling process starts it before the
workers and hands them its address (SESSION_BROKER); the workers never start or stop it.
"""

from __future__ import annotations

import base64
import os
import secrets

import pytest
import session_broker
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from support import free_port, unique_name

from deploy import launcher

# Every bus a test starts, in this process or as a subprocess, runs with real keys of its own
# (never the development shortcuts) and may call webhooks on loopback, where the tests'
# receivers listen, and retry in milliseconds. A test that needs other values sets them in its own environment.
os.environ.setdefault("SAMBAND_PSEUDONYM_KEY", secrets.token_hex(32))
os.environ.setdefault("SAMBAND_DLQ_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
os.environ.setdefault("SAMBAND_WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8")
os.environ.setdefault("SAMBAND_RETRY_MIN_SECONDS", "0.05")  # the tests' retry schedules wait milliseconds
# Four partitions per person-keyed topic, not the default twelve: hundreds of buses share the session's
# broker. tests/test_topic_layout.py runs the default and the checks against it.
os.environ.setdefault("SAMBAND_PARTITIONS", "4")
# One process per `samband worker`, not one per core: a test that signals or kills a worker means that
# process, and the suite's workers share the machine. tests/test_worker_processes.py runs several.
os.environ.setdefault("SAMBAND_WORKER_PROCESSES", "1")

# Confluent's 7.9 line is Apache Kafka 3.9: the same broker the launcher runs.
TESTCONTAINERS_IMAGE = "confluentinc/cp-kafka:7.9.0"


def _docker_engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no socket, no permission, no daemon: all mean "no engine"
        return False


SESSION_BROKER = "SAMBAND_TEST_SESSION_BROKER"  # set by the controlling process for its xdist workers


def _runs_workers(config: pytest.Config) -> bool:
    """This process controls xdist workers (not one of them, and not a single-process run)."""
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))


def pytest_configure(config: pytest.Config) -> None:
    if not _runs_workers(config) or launcher.external_bootstrap_servers() or _docker_engine_answers():
        return  # the session fixture finds the broker itself
    broker = session_broker.start()
    config.add_cleanup(lambda: session_broker.stop(broker))
    os.environ[SESSION_BROKER] = broker.bootstrap_servers  # the workers inherit the environment


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the session's broker, through any fixture, is marked `kafka`, so that
    `-m "not kafka"` (`make test-unit`) selects exactly the tests that need no broker."""
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """Bootstrap address of a real Kafka broker for the whole test session."""
    if external := launcher.external_bootstrap_servers() or os.environ.get(SESSION_BROKER):
        yield external
        return
    if _docker_engine_answers():
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer(TESTCONTAINERS_IMAGE).with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    broker = session_broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        session_broker.stop(broker)


@pytest.fixture
async def new_topic(kafka_bootstrap):
    """Factory: `await new_topic(partitions=1, prefix="t")` creates a unique topic, deleted after the test."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    created: list[str] = []

    async def create(partitions: int = 1, prefix: str = "test", config: dict[str, str] | None = None) -> str:
        name = unique_name(prefix)
        await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, topic_configs=config or {})]
        )
        created.append(name)
        return name

    try:
        yield create
    finally:
        if created:
            await admin.delete_topics(created)
        await admin.close()


@pytest.fixture
def worker_env(kafka_bootstrap, tmp_path):
    """Environment for a `samband worker` subprocess with its own app id (consumer group) and state."""
    return {
        **os.environ,
        "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SAMBAND_APP_ID": unique_name("worker"),
        "SAMBAND_DATA_DIR": str(tmp_path / "worker-data"),
        "SAMBAND_WEB_PORT": str(free_port()),
        "SAMBAND_LOG_FORMAT": "json",
    }
