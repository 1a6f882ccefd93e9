"""The batch services' state survives in its changelog topic: written per batch, recovered per partition (real broker)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from kafka_io import read_to_end

from bus.record_batches import RecordBatches
from bus.state import PartitionedState, SegmentedState
from bus.store import DiskStore


async def _write(bootstrap: str, state, pending) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        writes = RecordBatches(producer)
        await writes.load([state.topic])
        state.write(pending, writes)
        for future in await writes.send():
            await future
    finally:
        await producer.stop()


def _records(topic: str, tmp_path) -> SegmentedState:
    return SegmentedState(topic, {}, DiskStore.open(tmp_path, topic, cache_mb=16))


async def test_routing_records_are_one_segment_per_partition_and_batch_and_recover_the_latest_value(
    kafka_bootstrap, new_topic, tmp_path
):
    topic = await new_topic(partitions=2, prefix="router-records")
    records = _records(topic, tmp_path)
    await records.recover(kafka_bootstrap, {0, 1})  # (nothing yet)
    records.set(0, "event-a", ("barnehage", "skole"))
    records.set(0, "event-b", ())
    records.set(1, "event-c", ("helsestasjon",))
    assert records.get(0, "event-a") == ("barnehage", "skole")  # visible at once, before any write
    await _write(kafka_bootstrap, records, records.take())
    # A batch handled again after a crash: the same event, a later segment, another routing.
    records.set(0, "event-a", ("skole",))
    records.set(0, "event-d", ("bibliotek",))
    await _write(kafka_bootstrap, records, records.take())
    assert records.take() == []

    stored = await read_to_end(kafka_bootstrap, topic)
    assert sorted((r.partition, r.key.partition(b"~")[0]) for r in stored) == [
        (0, b"event-a"), (0, b"event-a"), (1, b"event-c")
    ]  # fmt: skip
    # Each segment its own key: keyed alike, compaction would keep the second and lose event-b.
    assert len({r.key for r in stored}) == 3

    records.close()
    recovered = _records(topic, tmp_path)
    await recovered.recover(kafka_bootstrap, {0})
    assert dict(recovered.partitions[0].items()) == {"event-a": ("skole",), "event-b": (), "event-d": ("bibliotek",)}
    await recovered.recover(kafka_bootstrap, {1})
    assert recovered.get(1, "event-c") == ("helsestasjon",)


async def test_a_routing_record_segment_is_closed_at_its_size_limit(kafka_bootstrap, new_topic, tmp_path):
    topic = await new_topic(partitions=1, prefix="router-records")
    records = _records(topic, tmp_path)
    records.SEGMENT_BYTES = 200  # about four of the entries below
    await records.recover(kafka_bootstrap, {0})
    routed = {f"event-{i:03d}": ("barnehage", "skole", "helsestasjon") for i in range(10)}
    for event_id, recipients in routed.items():
        records.set(0, event_id, recipients)
    pending = records.take()
    assert [len(entries) for _, entries in pending] == [4, 4, 2]
    await _write(kafka_bootstrap, records, pending)

    stored = await read_to_end(kafka_bootstrap, topic)
    assert max(len(r.value) for r in stored) <= 200
    records.close()
    recovered = _records(topic, tmp_path)
    await recovered.recover(kafka_bootstrap, {0})
    assert dict(recovered.partitions[0].items()) == routed


async def test_person_state_is_a_record_per_key_and_a_tombstone_deletes(kafka_bootstrap, new_topic):
    topic = await new_topic(partitions=2, prefix="router-persons")
    persons = PartitionedState(topic, {})
    persons.partitions = {0: {}, 1: {}}
    persons.set(0, "pseudonym-1", b'{"protection":"ugradert"}')
    persons.set(1, "pseudonym-2", b'{"protection":"fortrolig"}')
    persons.set(0, "pseudonym-3", b"{}")
    persons.delete(0, "pseudonym-3")
    await _write(kafka_bootstrap, persons, persons.take())

    recovered = PartitionedState(topic, {})
    await recovered.recover(kafka_bootstrap, {0, 1})
    assert recovered.partitions == {
        0: {"pseudonym-1": b'{"protection":"ugradert"}'},
        1: {"pseudonym-2": b'{"protection":"fortrolig"}'},
    }


async def test_recovery_skips_and_counts_malformed_records(kafka_bootstrap, new_topic, tmp_path):
    from agents import metrics

    def skipped(topic: str) -> float:
        return sum(
            s.value
            for m in metrics.REGISTRY.collect()
            for s in m.samples
            if s.name == "samband_malformed_records_total" and s.labels["topic"] == topic
        )

    seen_topic, records_topic = await new_topic(prefix="seen-ids"), await new_topic(prefix="router-records")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in [(b"a", b"1"), (b"b", b"not a time"), (b"\xff\xfe", b"2"), (b"c", b"3")]:
            await producer.send_and_wait(seen_topic, value, key=key)
        for value in [b'{"e1": ["skole"]}', b"\x00avro", b"[1]", b'{"e2": ["skole", 7]}', b'{"e3": []}']:
            await producer.send_and_wait(records_topic, value, key=b"segment")
    finally:
        await producer.stop()

    seen = PartitionedState(seen_topic, {}, check=int)
    await seen.recover(kafka_bootstrap, {0})
    assert seen.partitions[0] == {"a": b"1", "c": b"3"}
    records = _records(records_topic, tmp_path)
    await records.recover(kafka_bootstrap, {0})
    assert dict(records.partitions[0].items()) == {"e1": ("skole",), "e3": ()}  # a bad segment is left out whole
    assert (skipped(seen_topic), skipped(records_topic)) == (2, 3)


async def test_a_state_that_must_fail_closed_takes_its_safe_value_for_a_malformed_record(kafka_bootstrap, new_topic):
    """The router's person state: an unreadable protection grade is read as strengt fortrolig, never as none."""
    from agents.routing.router import PersonState

    persons_topic = await new_topic(prefix="router-persons")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(persons_topic, PersonState("fortrolig").to_json(), key=b"p1")
        await producer.send_and_wait(persons_topic, b"\x00 not a person state", key=b"p1")  # a later, unreadable value
        await producer.send_and_wait(persons_topic, PersonState().to_json(), key=b"p2")
    finally:
        await producer.stop()
    safe = PersonState("strengtFortrolig").to_json()
    persons = PartitionedState(persons_topic, {}, PersonState.from_json, fail_closed=safe)
    await persons.recover(kafka_bootstrap, {0})
    assert PersonState.from_json(persons.partitions[0]["p1"]).protection == "strengtFortrolig"
    assert PersonState.from_json(persons.partitions[0]["p2"]).protection == "ugradert"
