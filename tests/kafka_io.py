"""Produce and consume against the real test broker, with clear failures instead of hangs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError


async def _stop(consumer: AIOKafkaConsumer) -> None:
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        # With the broker gone, aiokafka lets its own fetch task's cancellation escape stop();
        # only a cancellation aimed at us may propagate.
        if asyncio.current_task().cancelling():
            raise


async def create_topics(bootstrap: str, *names: str, partitions: int = 4) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names])
    finally:
        await admin.close()


class KafkaWaitTimeout(AssertionError):
    """Fewer records than expected arrived in time; says how many, from where."""


async def produce(
    bootstrap: str, topic: str, values: Iterable[bytes], keys: Iterable[bytes | None] | None = None
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=10_000)
    await producer.start()
    try:
        values = list(values)
        keys = list(keys) if keys is not None else [None] * len(values)
        sends = [await producer.send(topic, value=v, key=k) for k, v in zip(keys, values, strict=False)]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def consume(
    bootstrap: str, topic: str, count: int, timeout: float = 30.0, got_first: asyncio.Event | None = None
) -> list[ConsumerRecord]:
    """Read `count` records from the start of `topic`; raise KafkaWaitTimeout after `timeout` seconds.

    `got_first` is set once a record has arrived, for tests that act while the consumer waits.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        request_timeout_ms=10_000,
    )
    records: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(timeout):
            await consumer.start()
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for partition_records in batch.values():
                    records.extend(partition_records)
                if records and got_first is not None:
                    got_first.set()
    except (TimeoutError, KafkaConnectionError):
        raise KafkaWaitTimeout(
            f"waited {timeout:.0f} s for {count} records on topic {topic!r} at {bootstrap}, got {len(records)}; "
            "is the broker up? (`samband kafka status`, `samband kafka logs`)"
        ) from None
    finally:
        await _stop(consumer)
    return records


async def read_to_end(bootstrap: str, topic: str, timeout: float = 30.0) -> list[ConsumerRecord]:
    """Every record in `topic` up to its current end offsets: duplicates included, nothing left unread."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=10_000)
    records: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(timeout):
            await consumer.start()
            # A topic created a moment ago may take a few metadata rounds to show its partitions.
            while not (found := consumer.partitions_for_topic(topic)):
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)  # poll interval; the timeout above bounds the wait
            partitions = [TopicPartition(topic, p) for p in found]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
                batch = await consumer.getmany(timeout_ms=500)
                for partition_records in batch.values():
                    records.extend(partition_records)
    except TimeoutError:
        raise KafkaWaitTimeout(
            f"could not read topic {topic!r} to its end at {bootstrap} within {timeout:.0f} s (got {len(records)})"
        ) from None
    finally:
        await _stop(consumer)
    return records


def event_id(record) -> str:
    """The event id of an ingest record, Avro or CloudEvents JSON: its key is the person's pseudonym."""
    from schemas.catalog import catalog
    from schemas.codec import Codec
    from schemas.registry import CatalogRegistry

    if record.value[:1] == b"\x00":
        return Codec(CatalogRegistry(catalog())).decode(record.value)["envelope"]["id"]
    return json.loads(record.value)["id"]
