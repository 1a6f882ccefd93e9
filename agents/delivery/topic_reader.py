"""Read a whole topic up to its current end, without a consumer group (for the ledger and the DLQ CLI)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition


async def read_topic(
    bootstrap: str, topic: str, timeout: float = 30.0, since: float | None = None
) -> AsyncIterator[ConsumerRecord]:
    """Every record in `topic` up to its end offsets at the time of the call; none if it does not exist.

    With `since` (epoch seconds), only the records written at or after that time.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        async with asyncio.timeout(timeout):
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            if not tps:
                return
            consumer.assign(tps)
            if since is None:
                await consumer.seek_to_beginning(*tps)
                end = await consumer.end_offsets(tps)
            else:
                end = await consumer.end_offsets(tps)
                found = await consumer.offsets_for_times({tp: int(since * 1000) for tp in tps})
                for tp in tps:
                    consumer.seek(tp, found[tp].offset if found[tp] is not None else end[tp])
            while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        yield record
    finally:
        await consumer.stop()
