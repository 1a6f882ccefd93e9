"""The co-partitioned assignor gives a worker the same partition numbers in every stage's group (bus/assignor.py)."""

from __future__ import annotations

from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from bus.assignor import CoPartitioned


class _Cluster:
    def __init__(self, partitions: dict[str, int]):
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(self.partitions[topic])) if topic in self.partitions else None


def _assign(topic: str, members: dict[str, bytes], partitions: int = 4) -> dict[bytes, list[int]]:
    """worker id -> its partitions of `topic`, for a group whose members have these (random) member ids."""
    metadata = {member: ConsumerProtocolMemberMetadata(0, [topic], worker) for member, worker in members.items()}
    assignment = CoPartitioned.assign(_Cluster({topic: partitions}), metadata)
    return {members[m]: [p for t, parts in a.assignment for p in parts if t == topic] for m, a in assignment.items()}


def test_each_worker_gets_the_same_partitions_in_every_group_whatever_its_member_ids():
    # Member ids are random per consumer: here they sort one way in one group and the other way in the next.
    ingest = _assign("ingest", {"aiokafka-a": b"worker-2", "aiokafka-b": b"worker-1"})
    router = _assign("events", {"aiokafka-a": b"worker-1", "aiokafka-b": b"worker-2"})
    delivery = _assign("deliveries", {"aiokafka-z": b"worker-1", "aiokafka-y": b"worker-2"})
    assert ingest == router == delivery == {b"worker-1": [0, 1], b"worker-2": [2, 3]}


def test_partitions_are_shared_in_contiguous_ranges_and_none_is_left_out():
    workers = {f"m{i}": f"w{i}".encode() for i in range(3)}
    assert _assign("events", workers, partitions=8) == {b"w0": [0, 1, 2], b"w1": [3, 4, 5], b"w2": [6, 7]}
    assert _assign("events", {"m": b"w"}, partitions=4) == {b"w": [0, 1, 2, 3]}


async def test_stage_consumers_joining_one_group_rebalance_once_per_member(kafka_bootstrap, caplog):
    """Three stage consumers (their real options) joining a group on the real broker: each join is
    one rebalance. With a second assignor, aiokafka sent two JoinGroups per join, the second with
    other metadata, which made the coordinator rebalance again; on a three-broker cluster the
    groups of three workers never settled (docs/reliability.md)."""
    import asyncio
    import logging

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from support import unique_name

    from bus import clients
    from bus.batches import stage_consumer_options

    topic, group = unique_name("assign"), unique_name("assign-group")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 6, 1)])
    finally:
        await admin.close()
    caplog.set_level(logging.INFO, logger="aiokafka")
    consumers = [clients.consumer(kafka_bootstrap, topic, **stage_consumer_options(group, 100, 10_000, 10_000))
                 for _ in range(3)]  # fmt: skip
    try:
        for consumer in consumers:
            await consumer.start()
        async with asyncio.timeout(60):
            while sum(len(c.assignment()) for c in consumers) != 6 or not all(c.assignment() for c in consumers):
                await asyncio.gather(*(c.getmany(timeout_ms=200) for c in consumers))
        generations = {c._coordinator.generation for c in consumers}
    finally:
        for consumer in consumers:
            await consumer.stop()
    joins = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"Joined group '{group}'")]
    # Settled, after at most one rebalance as each of the three joined (joins that meet may share one).
    [generation] = generations
    assert generation <= 3, joins
