"""Connector bookmarks in the compacted topic `<app id>-connector-state` (key = instance name; bus/topics.py).

`load()` reads the topic to its end once and keeps the latest value for this instance;
`save()` returns only once the broker has the new bookmark (acks=all), so a bookmark
saved after the data it covers is never ahead of that data.
"""

from __future__ import annotations

import json

from aiokafka import AIOKafkaProducer

from bus.malformed import json_object, skip_malformed
from bus.reading import read_topic
from connectors.api import StateStore


class KafkaStateStore(StateStore):
    def __init__(self, producer: AIOKafkaProducer, bootstrap: str, topic: str, instance: str):
        self._producer = producer
        self._bootstrap = bootstrap
        self._topic = topic
        self._key = instance.encode()

    async def load(self) -> dict | None:
        latest: dict | None = None
        async for record in read_topic(self._bootstrap, self._topic, wait_for_topic=True):
            if record.key == self._key:
                with skip_malformed(self._topic):  # the bookmark before it stays
                    latest = json_object(record.value) if record.value is not None else None  # None: reset
        return latest

    async def save(self, bookmark: dict) -> None:
        value = json.dumps(bookmark, separators=(",", ":"), sort_keys=True).encode()
        await (await self._producer.send(self._topic, value=value, key=self._key))

    async def reset(self) -> None:
        """Forget the bookmark (a tombstone); the next load() returns None."""
        await (await self._producer.send(self._topic, value=None, key=self._key))
