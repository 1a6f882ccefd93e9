"""bus/reading.py against the real broker: a read never creates the topic it reads, and its
timeout bounds the broker's time, not the caller's."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka.admin import AIOKafkaAdminClient
from kafka_io import produce

from bus.reading import read_latest, read_topic


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_reading_a_topic_that_does_not_exist_finds_nothing_and_creates_nothing(kafka_bootstrap):
    """The broker creates topics it is asked about by name (the launcher's, and Kafka's default):
    a read before the first worker would have made a bus topic with the broker's defaults."""
    missing = f"reading-missing-{uuid.uuid4().hex[:8]}"
    assert [r async for r in read_topic(kafka_bootstrap, missing)] == []
    assert await read_latest(kafka_bootstrap, missing) == {}
    assert missing not in await _topics(kafka_bootstrap)


async def test_the_callers_time_between_records_does_not_count_against_the_timeout(kafka_bootstrap, new_topic):
    topic = await new_topic(partitions=1)
    await produce(kafka_bootstrap, topic, [b"a", b"b", b"c"], [b"1", b"2", b"3"])
    read = []
    async for record in read_topic(kafka_bootstrap, topic, timeout=1.0):
        read.append(record.value)
        await asyncio.sleep(0.6)  # the caller's own slow work on each record, 1.8 s in all
    assert read == [b"a", b"b", b"c"]


async def test_a_read_says_where_it_ended_for_a_follower_to_go_on_from(kafka_bootstrap, new_topic):
    topic = await new_topic(partitions=2)
    await produce(kafka_bootstrap, topic, [b"x", b"y", b"z"], [b"k1", b"k2", b"k3"])
    ends: dict[int, int] = {}
    records = [r async for r in read_topic(kafka_bootstrap, topic, ends=ends)]
    assert sorted(ends) == [0, 1] and sum(ends.values()) == 3 == len(records)
