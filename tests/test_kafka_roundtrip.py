"""The test broker is a real Kafka: aiokafka produces and consumes through it, keys keep partitions."""

from kafka_io import consume, produce


async def test_produce_then_consume_returns_every_value_in_order(kafka_bootstrap, new_topic):
    topic = await new_topic(partitions=1)
    values = [f"event-{i}".encode() for i in range(100)]

    await produce(kafka_bootstrap, topic, values)
    records = await consume(kafka_bootstrap, topic, len(values), timeout=30)

    assert [r.value for r in records] == values
    assert [r.offset for r in records] == list(range(100))


async def test_same_key_lands_on_one_partition_in_order(kafka_bootstrap, new_topic):
    topic = await new_topic(partitions=4)
    keys = [f"person-{i % 5}".encode() for i in range(60)]
    values = [f"{k.decode()}:{i}".encode() for i, k in enumerate(keys)]

    await produce(kafka_bootstrap, topic, values, keys)
    records = await consume(kafka_bootstrap, topic, len(values), timeout=30)

    partitions_per_key: dict[bytes, set[int]] = {}
    for record in records:
        partitions_per_key.setdefault(record.key, set()).add(record.partition)
    assert all(len(p) == 1 for p in partitions_per_key.values())
    assert len({p for ps in partitions_per_key.values() for p in ps}) > 1  # keys spread over partitions
    for key in partitions_per_key:
        seen = [int(r.value.split(b":")[1]) for r in records if r.key == key]
        assert seen == sorted(seen)
