"""The runtime's KafkaOutput and KafkaStateStore against the real broker."""

from __future__ import annotations

import json
import time
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from support import pseudonym_key

from bus.clients import durable_producer
from connectors.api import OutputRecord
from connectors.bookmarks import KafkaStateStore
from connectors.output import KafkaOutput
from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.examples import PERSON, example
from schemas.ingest_key import IngestKey
from schemas.pseudonym import pseudonym
from schemas.registry import CatalogRegistry
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
        output = KafkaOutput(producer, topic, "bench-instance", IngestKey(pseudonym_key()))
        keys = [f"event-{n}" for n in range(60)]  # no person to read from these values: the connector's key
        sent = 0
        for version in range(3):  # each key three times: twice within a send, once more in the next
            records = [
                OutputRecord(k, f"{k}/{version}/{half}".encode(), [("x-test", b"1")]) for half in (0, 1) for k in keys
            ]
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


async def test_output_keys_every_event_by_its_person_so_one_persons_events_stay_in_order(connector_kafka, new_topic):
    """Whatever key the connector gives (here the event id, as every built-in source once did), the
    runtime keys each event by its person's pseudonym: Avro and CloudEvents JSON alike."""
    topic = await new_topic(partitions=4, prefix="conn-output-person")
    codec = Codec(CatalogRegistry(catalog()))
    people = [PERSON, "15838512345"[:9] + "00"]
    events = []
    for n in range(24):
        record = example("Move")
        record["envelope"] = {**record["envelope"], "id": f"move-{n}", "person": people[n % 2]}
        value = (
            codec.encode(record, codec.current_id("Move"))
            if n % 3
            else json.dumps({"id": f"move-{n}", "person": people[n % 2]}).encode()
        )  # a CloudEvent's person attribute
        events.append(OutputRecord(f"move-{n}", value))
    producer = durable_producer(connector_kafka)
    await producer.start()
    try:
        output = KafkaOutput(producer, topic, "person-order", IngestKey(pseudonym_key()))
        await output.send(events[:12])
        for event in events[12:]:
            await output.send([event])
    finally:
        await producer.stop()

    records = sorted(await consume(connector_kafka, topic, len(events)), key=lambda r: (r.partition, r.offset))
    for person in people:
        key = pseudonym(person, pseudonym_key()).encode()
        mine = [r for r in records if r.key == key]
        assert len({r.partition for r in mine}) == 1
        assert [r.value for r in mine] == [e.value for e in events if e.value in {r.value for r in mine}]
        assert len(mine) == 12


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
