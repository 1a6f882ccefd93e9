"""Connector bookmarks in the compacted topic `<app id>-connector-state` (key = instance name).

`load()` reads the topic to its end once and keeps the latest value for this instance;
`save()` returns only once the broker has the new bookmark (acks=all), so a bookmark
saved after the data it covers is never ahead of that data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from connectors.api import StateStore
from connectors.malformed import json_object, skip_malformed


async def ensure_state_topic(bootstrap: str, topic: str) -> None:
    """Create the state topic compacted (one partition: it is small and read whole) unless it exists."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            with contextlib.suppress(TopicAlreadyExistsError):  # another instance created it first
                await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()


class KafkaStateStore(StateStore):
    def __init__(self, producer: AIOKafkaProducer, bootstrap: str, topic: str, instance: str):
        self._producer = producer
        self._bootstrap = bootstrap
        self._topic = topic
        self._key = instance.encode()

    async def load(self) -> dict | None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(self._topic, p) for p in await _partitions(consumer, self._topic)]
            # End offsets first, before any partition is assigned: an assigned consumer at once sends
            # a fetch that the broker holds for fetch_max_wait_ms (0.5 s) when there is nothing to
            # read, and an offsets request on that connection waits behind it.
            end = await consumer.end_offsets(partitions)
            partitions = [tp for tp in partitions if end[tp] > 0]
            if not partitions:
                return None  # nothing was ever saved
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            latest: dict | None = None
            while any([await consumer.position(tp) < end[tp] for tp in partitions]):
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        if record.key == self._key:
                            with skip_malformed(self._topic):  # the bookmark before it stays
                                latest = json_object(record.value) if record.value is not None else None  # None: reset
            return latest
        finally:
            await consumer.stop()

    async def save(self, bookmark: dict) -> None:
        value = json.dumps(bookmark, separators=(",", ":"), sort_keys=True).encode()
        await (await self._producer.send(self._topic, value=value, key=self._key))

    async def reset(self) -> None:
        """Forget the bookmark (a tombstone); the next load() returns None."""
        await (await self._producer.send(self._topic, value=None, key=self._key))


async def _partitions(consumer: AIOKafkaConsumer, topic: str, timeout: float = 30.0) -> set[int]:
    """The topic's partitions; a topic created a moment ago may take a few metadata rounds to show
    (on a loaded broker, two processes of the suite beside it, more than 10 s)."""
    deadline = asyncio.get_running_loop().time() + timeout
    consumer._client.add_topic(topic)  # a fresh consumer has no topic's metadata; ask for this one, not all
    while True:
        await consumer._client.force_metadata_update()
        if partitions := consumer.partitions_for_topic(topic):
            return partitions
        if asyncio.get_running_loop().time() > deadline:
            raise LookupError(f"state topic {topic!r} does not exist")
        await asyncio.sleep(0.1)  # poll interval between metadata requests
