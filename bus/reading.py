"""Read a topic up to its current end, without a consumer group: the one read-to-end loop.

    async for record in read_topic(bootstrap, "samband-subscriptions"):
        ...

`read_latest` keeps the latest value per key. Used to load what is kept in compacted topics (subscriptions, delivery status, alerts,
connector bookmarks), to recover a batch stage's changelog state, and by the CLI (DLQ,
trace, privacy scan, delivery health).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.protocol.metadata import MetadataRequest

from bus import clients
from bus.malformed import skip_malformed


async def read_topic(
    bootstrap: str,
    topic: str,
    timeout: float | None = 30.0,
    since: float | None = None,
    partitions: Iterable[int] | None = None,
    wait_for_topic: bool = False,
    ends: dict[int, int] | None = None,
    from_offsets: dict[int, int] | None = None,
) -> AsyncIterator[ConsumerRecord]:
    """Every record in `topic` (or in its `partitions`) below its end offsets at the time of the
    call, in offset order per partition; none if the topic does not exist (it is never created:
    only the bus's ensure_topics creates topics, with the table's settings).

    `since` (epoch seconds): only the records written at or after that time. `wait_for_topic`:
    a topic created a moment ago may take a few metadata rounds to show (on a loaded broker more
    than 10 s); wait for it. `timeout`: how long the broker may keep the read from progressing
    (TimeoutError); the caller's own time between records does not count, and a long topic
    takes as long as it takes. `ends`, if given, is filled with the end offset read up to, per
    partition: where a follower of the topic goes on from. `from_offsets` (partition -> offset,
    within the partition's records): where to begin those partitions instead of their start.
    """
    consumer = clients.consumer(bootstrap, enable_auto_commit=False, max_poll_records=10_000)
    try:
        await consumer.start()  # inside: a start that fails (no broker) is stopped too, not left unclosed
        async with asyncio.timeout(timeout):
            if partitions is None:
                partitions = await _partitions(consumer, topic, wait_for_topic)
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            if not tps:
                return
            # End offsets first, before any partition is assigned: an assigned consumer at once sends
            # a fetch that the broker holds for fetch_max_wait_ms (0.5 s) when there is nothing to
            # read, and an offsets request on that connection waits behind it.
            end = await consumer.end_offsets(tps)
            start = await _starts(consumer, tps, end, since)
            start.update({TopicPartition(topic, p): offset for p, offset in (from_offsets or {}).items()})
            if ends is not None:
                ends.update({tp.partition: offset for tp, offset in end.items()})
            remaining = {tp for tp in tps if start.get(tp, 0) < end[tp]}
            if not remaining:
                return
            consumer.assign(list(remaining))
            for tp in remaining:
                if tp in start:
                    consumer.seek(tp, start[tp])
            if since is None and (from_start := remaining - start.keys()):
                await consumer.seek_to_beginning(*from_start)
        loop = asyncio.get_running_loop()
        progressed = loop.time()
        while remaining:
            async with asyncio.timeout(timeout):  # the broker's time only, never the caller's
                batch = await consumer.getmany(*remaining, timeout_ms=500)
            if batch:
                progressed = loop.time()
            elif timeout is not None and loop.time() - progressed > timeout:
                raise TimeoutError(f"{topic}: the broker gave no records for {timeout:.0f} s")
            for tp, records in batch.items():
                if records[-1].offset >= end[tp]:  # some were written after the call
                    records = [record for record in records if record.offset < end[tp]]
                for record in records:
                    yield record
            async with asyncio.timeout(timeout):  # (a partition whose records retention deleted is at its end)
                remaining = {tp for tp in remaining if await consumer.position(tp) < end[tp]}
    finally:
        await stop_quietly(consumer)


async def offset_bounds(bootstrap: str, topic: str, partitions: Iterable[int]) -> dict[int, tuple[int, int]]:
    """Partition -> (its first offset, its end offset) now."""
    consumer = clients.consumer(bootstrap, enable_auto_commit=False)
    try:
        await consumer.start()
        tps = [TopicPartition(topic, p) for p in partitions]
        first, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        return {tp.partition: (first[tp], end[tp]) for tp in tps}
    finally:
        await stop_quietly(consumer)


async def topic_id(bootstrap: str, topic: str) -> str | None:
    """The broker's id of `topic` (a topic deleted and made again, or the same name on another
    cluster, has another); None if it cannot be asked (no such topic, or no answer in 10 s)."""

    def ask() -> str | None:
        from confluent_kafka import KafkaException, TopicCollection

        try:
            admin = clients.librdkafka_admin(bootstrap)  # held until the answer: its futures end with it
            found = admin.describe_topics(TopicCollection([topic]), request_timeout=10)
            return str(found[topic].result(timeout=15).topic_id)
        except (KafkaException, ValueError, TimeoutError):
            return None

    return await asyncio.to_thread(ask)


async def read_latest(
    bootstrap: str, topic: str, read: Callable[[bytes], Any] = bytes, timeout: float | None = 30.0
) -> dict[str, Any]:
    """The latest value per key of a compacted topic, as `read` makes it (a tombstone removes the
    key); a record that `read` or its key cannot make sense of is skipped and counted (malformed.py)."""
    latest: dict[str, Any] = {}
    async for record in read_topic(bootstrap, topic, timeout):
        with skip_malformed(topic):
            key = record.key.decode()
            if record.value is None:
                latest.pop(key, None)
            else:
                latest[key] = read(record.value)
    return latest


async def _starts(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], end: dict[TopicPartition, int], since: float | None
) -> dict[TopicPartition, int]:
    """Where to begin each partition when reading `since` a time (empty: from the beginning)."""
    if since is None:
        return {}
    found = await consumer.offsets_for_times({tp: int(since * 1000) for tp in tps})
    return {tp: found[tp].offset if found[tp] is not None else end[tp] for tp in tps}


async def _partitions(consumer: AIOKafkaConsumer, topic: str, wait: bool) -> set[int]:
    """The topic's partitions, asked with auto-creation off: a broker that auto-creates topics (Kafka's
    default) would otherwise create it on a read, with its defaults rather than the table's."""
    client = consumer._client
    while True:
        response = await client.send(
            client.get_random_node(), MetadataRequest([topic], allow_auto_topic_creation=False)
        )
        for found in response.to_object()["topics"]:
            if found["topic"] == topic and found["error_code"] == 0 and found["partitions"]:
                return {partition["partition"] for partition in found["partitions"]}
        if not wait:
            return set()
        await asyncio.sleep(0.1)  # poll interval between metadata requests (the caller's timeout bounds it)


async def partition_count(bootstrap: str, topic: str) -> int:
    """How many partitions `topic` has (0 when it does not exist), as the broker says."""
    consumer = clients.consumer(bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return len(await _partitions(consumer, topic, wait=False))
    finally:
        await stop_quietly(consumer)


async def stop_quietly(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer; aiokafka may let its own internal task's cancellation escape stop(): only
    a cancellation of the caller itself goes on."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
