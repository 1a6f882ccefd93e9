"""`samband topics` and `samband lag` against the real broker, with unique topics and a consumer group made here."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from kafka_io import produce
from samband_cli import samband
from support import free_port


async def test_topics_counts_messages_held_as_end_minus_start_offsets(kafka_bootstrap, new_topic):
    topic = await new_topic(partitions=3, prefix="ops-topics")
    await produce(kafka_bootstrap, topic, [b"v"] * 9, [b"a", b"b", b"c"] * 3)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        # Records removed from the start of one partition are no longer held.
        first = sorted(await _nonempty_partitions(kafka_bootstrap, topic))[0]
        await admin.delete_records({TopicPartition(topic, first): RecordsToDelete(1)}, timeout_ms=10_000)
    finally:
        await admin.close()

    result = await samband(kafka_bootstrap, "topics", "--prefix", topic, "--interval", "0", "--json")
    assert result.code == 0, result.stderr
    assert result.json()["topics"] == [{"name": topic, "partitions": 3, "messages": 8, "rate_per_second": None}]


async def _nonempty_partitions(bootstrap: str, topic: str) -> list[int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        return [tp.partition for tp, end in (await consumer.end_offsets(tps)).items() if end > 0]
    finally:
        await consumer.stop()


async def test_topics_rate_counts_records_appended_during_the_interval(kafka_bootstrap, new_topic):
    topic = await new_topic(partitions=1, prefix="ops-rate")
    interval = 2.0
    cli = asyncio.create_task(
        samband(kafka_bootstrap, "topics", "--prefix", topic, "--interval", str(interval), "--json")
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    produced = 0
    try:
        while not cli.done():  # keep appending until the CLI has taken both samples
            await producer.send_and_wait(topic, b"r")
            produced += 1
    finally:
        await producer.stop()
    result = await cli
    assert result.code == 0, result.stderr
    [row] = result.json()["topics"]
    assert 0 < row["rate_per_second"] * interval <= produced


async def test_lag_reports_group_lag_per_topic_and_fails_above_max_lag(kafka_bootstrap, new_topic):
    topic = await new_topic(partitions=2, prefix="ops-lag")
    group = f"ops-lag-group-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for partition in (0, 1):
            for _ in range(5):
                await producer.send_and_wait(topic, b"v", partition=partition)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        consumer.assign(tps)
        await consumer.commit(dict.fromkeys(tps, 3))  # 5 on each partition: two behind on each
    finally:
        await consumer.stop()

    within = await samband(kafka_bootstrap, "lag", "--group", group, "--max-lag", "4", "--json")
    assert within.code == 0, within.stderr
    [row] = within.json()["lag"]
    assert (row["group"], row["topic"], row["lag"]) == (group, topic, 4)
    assert [p["lag"] for p in row["partitions"]] == [2, 2]

    above = await samband(kafka_bootstrap, "lag", "--group", group, "--max-lag", "3")
    assert above.code == 1
    assert f"group {group} lags 4 on {topic} (max 3)" in above.stdout


async def test_a_stage_group_lags_on_the_partitions_of_its_input_it_has_not_committed_on(kafka_bootstrap):
    """Found by a hostile review: a stage's group that had committed on only some partitions of its
    input was shown with the lag of those alone, and `--max-lag` passed while the rest of the topic
    waited; a stage's group that had joined but committed on none showed no lag at all. Every
    partition of its input counts now, one never committed on from its start."""
    app_id = f"opslag{uuid.uuid4().hex[:8]}"
    topic, group = f"{app_id}-events", f"{app_id}-router"  # the router's group reads the events topic
    ingest = f"{app_id}-ingest"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        await _produce_each(kafka_bootstrap, topic, 5)
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 0)])
            await consumer.commit({TopicPartition(topic, 0): 3})  # partition 1: never committed on
        finally:
            await consumer.stop()

        env = {"SAMBAND_APP_ID": app_id}
        result = await samband(kafka_bootstrap, "lag", "--max-lag", "6", "--json", env=env)
        [row] = result.json()["lag"]
        assert (row["group"], row["topic"], row["lag"]) == (group, topic, 7)  # before: 2
        assert [(p["partition"], p["lag"]) for p in row["partitions"]] == [(0, 2), (1, 5)]
        assert result.code == 1 and f"group {group} lags 7 on {topic} (max 6)" in result.json()["problems"]

        status = await samband(kafka_bootstrap, "status", "--json", "--interval", "0", env=env)
        assert [(r["group"], r["lag"]) for r in status.json()["lag"]] == [(group, 7)]

        # A new ingest group, joined (as a worker starting on a register extract) but committed on nowhere.
        await admin.create_topics([NewTopic(ingest, num_partitions=2, replication_factor=1)])
        await _produce_each(kafka_bootstrap, ingest, 4)
        joined = AIOKafkaConsumer(ingest, bootstrap_servers=kafka_bootstrap, group_id=f"{app_id}-ingest",
                                  enable_auto_commit=False)  # fmt: skip
        await joined.start()
        try:
            async with asyncio.timeout(30):
                while not joined.assignment():
                    await joined.getmany(timeout_ms=100)  # joins the group; nothing committed
            result = await samband(kafka_bootstrap, "lag", "--json", env=env)
        finally:
            await joined.stop()
        lags = {(row["group"], row["topic"]): row["lag"] for row in result.json()["lag"]}
        assert lags == {(f"{app_id}-ingest", ingest): 8, (group, topic): 7}  # before: the ingest group absent
    finally:
        await admin.delete_topics([topic, ingest])
        await admin.close()


async def _produce_each(bootstrap: str, topic: str, count: int) -> None:
    """`count` records to each of partitions 0 and 1."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition in (0, 1):
            for _ in range(count):
                await producer.send_and_wait(topic, b"v", partition=partition)
    finally:
        await producer.stop()


async def test_topics_and_lag_exit_2_when_the_broker_cannot_be_reached():
    nowhere = f"127.0.0.1:{free_port()}"
    for command in (["topics"], ["lag"]):
        result = await samband(nowhere, *command, "--timeout", "3")
        assert result.code == 2
        assert f"Kafka at {nowhere} could not be reached" in result.stderr
