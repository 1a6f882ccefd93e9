"""Follow a topic in the background during a test and wait on conditions over what arrived."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord


class TopicWatch:
    def __init__(self, bootstrap: str, topic: str):
        self.bootstrap = bootstrap
        self.topic = topic
        self.records: list[ConsumerRecord] = []
        self._arrived = asyncio.Condition()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> TopicWatch:
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            metadata_max_age_ms=1000,
        )
        await consumer.start()
        self._task = asyncio.create_task(self._follow(consumer))
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                async with self._arrived:
                    for records in batch.values():
                        self.records.extend(records)
                    self._arrived.notify_all()
        finally:
            await consumer.stop()

    async def wait_for(self, condition: Callable[[list[ConsumerRecord]], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                async with self._arrived:
                    await self._arrived.wait_for(lambda: condition(self.records))
        except TimeoutError:
            raise AssertionError(
                f"{what}: not within {timeout} s ({len(self.records)} records on {self.topic})"
            ) from None

    def deliveries(self) -> list[dict]:
        return [json.loads(r.value) for r in self.records]


def delivered(watch: TopicWatch, sub_id: str, event_id: str) -> list[dict]:
    return [d for d in watch.deliveries() if d["subscription"] == sub_id and d["event"]["id"] == event_id]
