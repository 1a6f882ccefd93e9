"""The runtime's KafkaOutput and KafkaStateStore against the real broker."""

from __future__ import annotations

import time
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from connectors.api import OutputRecord
from connectors.output import KafkaOutput
from connectors.runtime import durable_producer
from connectors.state import KafkaStateStore
from tests.kafka_io import consume


async def _end_offsets(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])).values())
    finally:
        await consumer.stop()


async def test_output_puts_each_key_where_a_kafka_client_would_in_order_and_durable(connector_kafka, new_topic):
    topic = await new_topic(partitions=4, prefix="conn-output")
    producer = durable_producer(connector_kafka)
    await producer.start()
    try:
        output = KafkaOutput(producer, topic, "bench-instance")
        keys = [f"event-{n}" for n in range(60)]
        sent = 0
        for version in range(3):  # each key three times: twice within a send, once more in the next
            records = [OutputRecord(k, f"{k}/{version}/{half}".encode(), [("x-test", b"1")]) for half in (0, 1) for k in keys]
            await output.send(records)
            sent += len(records)
            assert await _end_offsets(connector_kafka, topic, 4) == sent  # all in the log once send returns
    finally:
        await producer.stop()

    records = await consume(connector_kafka, topic, sent)
    partitioner, partitions = DefaultPartitioner(), [0, 1, 2, 3]
    values = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.partition == partitioner(record.key, partitions, partitions)  # murmur2, like producer.send
        assert dict(record.headers) == {"x-test": b"1", "samband-source": b"bench-instance"}
        values[record.key.decode()].append(record.value.decode())
    assert len({r.partition for r in records}) == 4
    for key in keys:
        assert values[key] == [f"{key}/{version}/{half}" for version in range(3) for half in (0, 1)]


async def test_bookmark_load_does_not_wait_for_a_fetch_long_poll(connector_kafka, new_topic):
    """Loading asks the end offsets before a fetch can be held by the broker (fetch_max_wait_ms, 0.5 s)."""
    topic = await new_topic(partitions=1, prefix="conn-state", config={"cleanup.policy": "compact"})
    producer = durable_producer(connector_kafka)
    await producer.start()
    try:
        store = KafkaStateStore(producer, connector_kafka, topic, "instance-a")
        other = KafkaStateStore(producer, connector_kafka, topic, "instance-b")
        started = time.perf_counter()
        assert await store.load() is None  # empty topic: a fetch from offset 0 would be held
        assert time.perf_counter() - started < 0.4

        await other.save({"next_seq": 7})
        started = time.perf_counter()
        assert await store.load() is None  # only another instance's bookmark
        assert time.perf_counter() - started < 0.4

        await store.save({"next_seq": 3})
        await store.save({"next_seq": 5})
        assert await store.load() == {"next_seq": 5}
        await store.reset()
        assert await store.load() is None
        assert await other.load() == {"next_seq": 7}
    finally:
        await producer.stop()


async def test_a_malformed_bookmark_is_skipped_and_the_one_before_it_loads(connector_kafka, new_topic):
    topic = await new_topic(partitions=1, prefix="conn-state")
    producer = durable_producer(connector_kafka)
    await producer.start()
    try:
        store = KafkaStateStore(producer, connector_kafka, topic, "instance-a")
        await store.save({"next_seq": 7})
        for garbage in (b"\x00avro", b"[7]"):
            await producer.send_and_wait(topic, garbage, key=b"instance-a")
        assert await store.load() == {"next_seq": 7}
    finally:
        await producer.stop()
