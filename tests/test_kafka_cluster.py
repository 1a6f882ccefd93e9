"""`samband kafka up --brokers 3`: a real three-node KRaft cluster from Apache's jars, started, one
node killed (kill -9) and started again through the CLI, while records are written with acks=all
to a bus topic, which the bus made with three replicas and min.insync.replicas 2: none is lost."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from support import free_port_run

from bus.topics import EVENTS, ensure_table_topics


@pytest.fixture
def kafka_cli(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env |= {"SAMBAND_KAFKA_PORT": str(free_port_run(6)), "SAMBAND_KAFKA_STATE_DIR": str(tmp_path / "cluster")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "agents.cli", "kafka", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    yield run
    run("down")


async def _topic_configs(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    [configs] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    return {name: value for name, value, *_ in configs.resources[0][4]}


async def _send(bootstrap: str, topic: str, values: range) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, str(value).encode(), partition=0)
    finally:
        await producer.stop()


async def test_a_three_node_cluster_loses_nothing_when_a_node_is_killed_and_started_again(kafka_cli):
    up = kafka_cli("up", "--brokers", "3")
    assert up.returncode == 0, up.stdout + up.stderr
    bootstrap = up.stdout.split("bootstrap ", 1)[1].split()[0]
    assert len(bootstrap.split(",")) == 3
    status = kafka_cli("status")
    assert status.returncode == 0 and status.stdout.count("broker running") == 3, status.stdout

    # The bus makes its topics for the cluster it finds: three replicas, two of them in sync.
    await ensure_table_topics(bootstrap, "clustered", [EVENTS])
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not (partitions := (await admin.describe_topics(["clustered-events"]))[0]["partitions"]):
            assert asyncio.get_running_loop().time() < deadline, "the new topic's partitions never showed"
            await asyncio.sleep(0.1)  # poll interval: the metadata of a new topic reaches every broker
        assert {len(p["replicas"]) for p in partitions} == {3}
        # Any broker answers: one the new topic has not reached yet answers with no configs.
        while not (settings := await _topic_configs(admin, "clustered-events")):
            assert asyncio.get_running_loop().time() < deadline, "the new topic's configs never showed"
            await asyncio.sleep(0.1)  # poll interval inside the deadline
        assert settings["min.insync.replicas"] == "2"
    finally:
        await admin.close()
    await _send(bootstrap, "clustered-events", range(50))

    killed = kafka_cli("kill", "--node", "2")
    assert killed.returncode == 0 and "node 2 killed" in killed.stdout
    degraded = kafka_cli("status")
    assert degraded.returncode == 1 and "node 2: broker not running" in degraded.stdout
    await _send(bootstrap, "clustered-events", range(50, 100))  # two of three replicas in sync: acks=all holds

    started = kafka_cli("start", "--node", "2")
    assert started.returncode == 0 and "node 2: broker running" in started.stdout, started.stdout + started.stderr
    assert "broker" in kafka_cli("logs", "--node", "2", "-n", "5").stdout.lower()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition("clustered-events", 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        values: list[int] = []
        while len(values) < 100:
            batch = await consumer.getmany(tp, timeout_ms=10_000)
            assert batch, f"only {len(values)} of 100 records could be read back"
            values += [int(record.value) for record in batch[tp]]
    finally:
        await consumer.stop()
    assert values == list(range(100))

    down = kafka_cli("down")
    assert down.returncode == 0 and "3 of 3 nodes stopped" in down.stdout
    assert kafka_cli("status").stdout.count("broker not running") == 3
