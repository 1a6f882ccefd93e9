"""The bus's topic layout (bus/topics.py `Layout`): SAMBAND_PARTITIONS (default 12), replication and
min.insync.replicas from the cluster's size, and a bus that stops with one line when the topics it
finds disagree with the layout, never running mis-partitioned."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from support import unique_name

from bus.topics import (
    DEFAULT_PARTITIONS,
    EVENTS,
    SUBSCRIPTIONS,
    Layout,
    TopicLayoutError,
    ensure_table_topics,
    ensure_topics,
)


def test_the_default_is_twelve_partitions_and_replicas_follow_the_cluster(monkeypatch):
    for name in ("SAMBAND_PARTITIONS", "SAMBAND_REPLICATION_FACTOR", "SAMBAND_MIN_INSYNC_REPLICAS"):
        monkeypatch.delenv(name, raising=False)
    layout = Layout.from_env()
    assert DEFAULT_PARTITIONS == 12 and layout.partitions == 12
    assert layout.replicas(1) == (1, 1)
    assert layout.replicas(2) == (2, 1)
    assert layout.replicas(3) == (3, 2)
    assert layout.replicas(5) == (3, 2)


def test_layout_settings_are_checked_with_the_variable_named(monkeypatch):
    monkeypatch.setenv("SAMBAND_PARTITIONS", "0")
    with pytest.raises(TopicLayoutError, match="SAMBAND_PARTITIONS: expected a whole number of at least 1, got '0'"):
        Layout.from_env()
    monkeypatch.setenv("SAMBAND_PARTITIONS", "6")
    monkeypatch.setenv("SAMBAND_REPLICATION_FACTOR", "2")
    monkeypatch.setenv("SAMBAND_MIN_INSYNC_REPLICAS", "3")
    with pytest.raises(
        TopicLayoutError, match="SAMBAND_MIN_INSYNC_REPLICAS=3 is more than SAMBAND_REPLICATION_FACTOR=2"
    ):
        Layout.from_env()
    monkeypatch.setenv("SAMBAND_MIN_INSYNC_REPLICAS", "1")
    assert Layout.from_env().replicas(5) == (2, 1)  # set: whatever the cluster's size


def test_a_broker_down_for_a_moment_makes_no_topic_weaker(monkeypatch):
    """Found by bench_workers: right after a start one broker was not yet up, and a topic was made
    with two replicas; the cluster's default.replication.factor now counts too."""
    for name in ("SAMBAND_REPLICATION_FACTOR", "SAMBAND_MIN_INSYNC_REPLICAS"):
        monkeypatch.delenv(name, raising=False)
    assert Layout.from_env().replicas(2, cluster_default=3) == (3, 2)
    assert Layout.from_env().replicas(3, cluster_default=1) == (3, 2)  # Kafka's own default is 1


async def test_a_topic_is_not_made_with_fewer_brokers_up_than_its_replicas(kafka_bootstrap, monkeypatch):
    monkeypatch.setenv("SAMBAND_REPLICATION_FACTOR", "2")
    app = unique_name("layout-rf")
    with pytest.raises(TopicLayoutError, match=f"topic {app}-events needs 2 replicas but 1 broker"):
        await ensure_table_topics(kafka_bootstrap, app, [EVENTS])


async def _describe(bootstrap: str, topic: str) -> tuple[int, set[int], str]:
    """(partitions, replica counts, min.insync.replicas) of a topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not (parts := (await admin.describe_topics([topic]))[0]["partitions"]):
            assert asyncio.get_running_loop().time() < deadline, f"{topic}'s partitions never showed"
            await asyncio.sleep(0.1)  # poll interval: a new topic's metadata is on its way
        [configs] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    settings = {name: value for name, value, *_ in configs.resources[0][4]}
    return len(parts), {len(p["replicas"]) for p in parts}, settings["min.insync.replicas"]


async def test_the_bus_makes_its_topics_with_the_layout(kafka_bootstrap, monkeypatch):
    monkeypatch.delenv("SAMBAND_PARTITIONS")  # the default, as a fresh install has it
    app = unique_name("layout")
    await ensure_table_topics(kafka_bootstrap, app, [EVENTS, SUBSCRIPTIONS])
    assert await _describe(kafka_bootstrap, EVENTS.name(app)) == (12, {1}, "1")  # one broker: one replica
    assert (await _describe(kafka_bootstrap, SUBSCRIPTIONS.name(app)))[0] == 1  # its own count, whatever the layout

    monkeypatch.setenv("SAMBAND_PARTITIONS", "6")
    with pytest.raises(TopicLayoutError, match=f"topic {EVENTS.name(app)} has 12 partitions but the bus needs 6"):
        await ensure_table_topics(kafka_bootstrap, app, [EVENTS])


def test_a_worker_on_topics_of_another_partition_count_stops_with_one_line(kafka_bootstrap, worker_env):
    """A bus made with 4 partitions, then started with SAMBAND_PARTITIONS=12: a person's state would be
    looked for in the wrong partition. The worker refuses to start and says what to do."""
    app = worker_env["SAMBAND_APP_ID"]
    made = subprocess.run(
        [sys.executable, "-c", f"import asyncio; from bus.topics import *; "
         f"asyncio.run(ensure_table_topics({kafka_bootstrap!r}, {app!r}, list(TABLE)))"],
        env={**worker_env, "SAMBAND_PARTITIONS": "4"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    result = subprocess.run(
        [sys.executable, "-m", "agents.cli", "worker"],
        env={**worker_env, "SAMBAND_PARTITIONS": "12"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("samband:")]
    assert len(lines) == 1, result.stderr
    assert "has 4 partitions but the bus needs 12" in lines[0]
    assert "set SAMBAND_PARTITIONS to the count the topics have" in lines[0]
    assert "Traceback" not in result.stderr


async def test_a_bus_topic_made_elsewhere_with_settings_that_lose_records_is_refused(kafka_bootstrap, new_topic):
    """A dead-letter topic pre-made with compaction would keep one letter per key; one with fewer
    replicas in sync than the layout asks for would acknowledge writes a broker could lose."""
    from bus.topics import DEADLETTER

    compacted = await new_topic(partitions=4, prefix="layout-dl", config={"cleanup.policy": "compact"})
    with pytest.raises(TopicLayoutError, match=r"has cleanup\.policy=compact but the bus needs delete"):
        await ensure_topics(kafka_bootstrap, {compacted: DEADLETTER.configs()}, 4, check=True)
    await ensure_topics(kafka_bootstrap, {compacted: {"cleanup.policy": "compact"}}, 4, check=True)  # as wanted


async def test_a_topic_that_keeps_records_shorter_than_its_setting_asks_is_refused(kafka_bootstrap, new_topic):
    """Routing records made elsewhere with the broker's 7 days, where the setting asks for 400: the
    router would lose them at its next start and dead-letter the corrections of older events."""
    from bus.topics import ROUTER_RECORDS

    week = await new_topic(partitions=4, prefix="layout-rr", config={"cleanup.policy": "compact,delete",
                                                                     "retention.ms": str(7 * 86_400_000)})  # fmt: skip
    wanted = ROUTER_RECORDS.configs(retention_ms=400 * 86_400_000)
    with pytest.raises(TopicLayoutError, match=r"keeps records 7 days \(retention\.ms=604800000\) but the bus's "
                                               r"settings need 400 days"):  # fmt: skip
        await ensure_topics(kafka_bootstrap, {week: wanted}, 4, check=True)
    await ensure_topics(kafka_bootstrap, {week: ROUTER_RECORDS.configs(retention_ms=7 * 86_400_000)}, 4, check=True)


async def test_a_pull_topic_of_more_than_one_partition_is_refused_not_written(kafka_bootstrap, new_topic):
    """Its reader reads partition 0 alone: records keyed by person over four partitions would be
    lost to the subscriber while the ledger said delivered (found by a hostile review)."""
    from agents.delivery.stage import DirectWrites

    scattered = await new_topic(partitions=4, prefix="layout-pull")
    ensure_pull = DirectWrites(kafka_bootstrap, "unused-status").pull_topics(7)
    with pytest.raises(TopicLayoutError, match=f"topic {scattered} has 4 partitions but the bus needs 1"):
        await ensure_pull(scattered)


async def test_a_worker_makes_its_topics_with_their_settings_and_faust_s_leader_topic_with_the_layout(
    kafka_bootstrap, worker_env, tmp_path
):
    """The disclosures keep SAMBAND_DISCLOSURE_RETENTION_DAYS, and the deduplication state its hours
    (a newcomer's review found the start-up check made every topic first, without them)."""
    from worker_process import WorkerProcess

    from agents.app import leader_topic
    from bus.topics import DISCLOSURES, INGEST_SEEN_IDS

    app = worker_env["SAMBAND_APP_ID"]
    env = {**worker_env, "SAMBAND_DISCLOSURE_RETENTION_DAYS": "2", "SAMBAND_DEDUP_RETENTION_HOURS": "5"}
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        wanted = {DISCLOSURES.name(app), INGEST_SEEN_IDS.name(app), leader_topic(app)}
        deadline = asyncio.get_running_loop().time() + 90
        while not wanted <= set(await admin.list_topics()):
            assert worker.process.poll() is None, worker.log_tail()
            assert asyncio.get_running_loop().time() < deadline, f"not made: {wanted - set(await admin.list_topics())}"
            await asyncio.sleep(0.2)  # poll interval inside the deadline
        found = {}
        for name in (DISCLOSURES.name(app), INGEST_SEEN_IDS.name(app)):
            [configs] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
            found[name] = {entry[0]: entry[1] for entry in configs.resources[0][4]}["retention.ms"]
    finally:
        await admin.close()
        assert worker.stop() == 0, worker.log_tail()
    assert found == {DISCLOSURES.name(app): str(2 * 86_400_000), INGEST_SEEN_IDS.name(app): str(5 * 3_600_000)}
