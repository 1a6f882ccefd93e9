"""Subscriptions in Kafka: the compacted topic `samband-subscriptions`, key = id, value = JSON.

A tombstone (null value) deletes. Writers (the CLI, the HTTP API) produce with acks=all;
every worker follows the whole topic with its own consumer (no consumer group), so a change
reaches every worker within the fetch wait (0.5 s), with no restart and no cache.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from agents.subscriptions.model import Subscription
from bus import clients, malformed
from bus.malformed import skip_malformed
from bus.reading import read_latest, stop_quietly
from bus.topics import SUBSCRIPTIONS, ensure_topics

log = structlog.get_logger(__name__)


async def ensure_topic(bootstrap: str, topic: str) -> None:
    """Create the subscriptions topic (or the audit log, made alike) unless it exists."""
    await ensure_topics(bootstrap, {topic: SUBSCRIPTIONS.configs()}, SUBSCRIPTIONS.partition_count())


async def write(bootstrap: str, topic: str, changes: list[tuple[str, bytes | None]]) -> int:
    """Write (id, JSON or None for delete) pairs; returns the offset of the last one."""
    producer = clients.durable_producer(bootstrap)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=sub_id.encode(), value=value) for sub_id, value in changes]
        results = await asyncio.gather(*futures)
        return results[-1].offset if results else -1
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str, timeout: float = 30.0) -> dict[str, bytes]:
    """Every live subscription (id -> JSON) as of now: the last value per key, deleted ones left out."""
    return await read_latest(bootstrap, topic, timeout=timeout)


# How far the clocks of the hosts writing the events topic may be from this host's (NTP keeps
# them within milliseconds); `sync_for` relies on it.
CLOCK_MARGIN_MS = 2_000


class SubscriptionFollower:
    """Reads the subscriptions topic from its start and keeps following it: one per worker, shared
    by the router (its index), delivery (its targets) and the HTTP API. Each record is parsed
    once for the listeners; `current` holds every live subscription as its JSON (`subscription()`
    parses one again: the parsed model is about 4.6 KB, its JSON about 600 bytes, and a national
    worker holds 18,000), and every listener (`listen`) is called with the parsed model for each
    change, in the topic's order.

    `caught_up` is set once everything written before the start has been applied: the router
    routes nothing before, so a restarted worker never routes with a partial set.
    """

    def __init__(self, bootstrap: str, topic: str):
        self.bootstrap = bootstrap
        self.topic = topic
        self.current: dict[str, bytes] = {}  # id -> the subscription as `Subscription.to_json` writes it
        self._listeners: list[tuple[Callable[[Subscription], None], Callable[[str], None]]] = []
        self.caught_up = asyncio.Event()
        self.position = 0  # next offset to apply
        self._advanced = asyncio.Condition()
        self._offsets: AIOKafkaConsumer | None = None  # asks the topic's end offset for sync()
        self._offsets_starting = asyncio.Lock()
        self._synced_from_ms = 0.0  # when the latest completed sync() started (this host's clock)

    async def run(self) -> None:
        await ensure_topic(self.bootstrap, self.topic)
        tp = TopicPartition(self.topic, 0)
        consumer = clients.consumer(self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=200)
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            if end == 0:
                self.caught_up.set()
            while True:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for record in records:
                        with skip_malformed(self.topic):
                            self._apply(record)
                self.position = await consumer.position(tp)
                if self.position >= end:
                    self.caught_up.set()
                async with self._advanced:
                    self._advanced.notify_all()
        finally:
            await consumer.stop()
            if self._offsets is not None:
                await stop_quietly(self._offsets)

    def subscription(self, sub_id: str) -> Subscription | None:
        """The live subscription `sub_id`, parsed, or None."""
        found = self.current.get(sub_id)
        return None if found is None else Subscription.from_json(found)

    def listen(self, on_put: Callable[[Subscription], None], on_delete: Callable[[str], None]) -> None:
        """Be told of every change from now on; listen before `run()` to be told of every subscription."""
        self._listeners.append((on_put, on_delete))

    def _apply(self, record) -> None:
        sub_id = record.key.decode()
        if record.value is None:
            self._delete(sub_id)
            return
        try:
            sub = Subscription.from_json(record.value)
        except ValidationError as exc:
            self._invalid(sub_id, record.offset, [".".join(map(str, e["loc"])) for e in exc.errors()])
            return
        if sub.id != sub_id:  # the key is what a tombstone deletes: a body naming another id is not this one
            self._invalid(sub_id, record.offset, ["id"])
            return
        self.current[sub.id] = sub.to_json()
        for on_put, _ in self._listeners:
            on_put(sub)

    def _invalid(self, sub_id: str, offset: int, errors: list[str]) -> None:
        """Written around the validating writers: deliver nothing under it rather than guess."""
        log.error("subscription_invalid_on_topic", subscription=sub_id, offset=offset, errors=errors)
        malformed.count(self.topic, ValidationError)
        self._delete(sub_id)

    def _delete(self, sub_id: str) -> None:
        self.current.pop(sub_id, None)
        for _, on_delete in self._listeners:
            on_delete(sub_id)

    async def wait_applied(self, offset: int, timeout: float = 10.0) -> None:
        """Wait until the record at `offset` is applied here (read-your-writes for the HTTP API)."""
        async with asyncio.timeout(timeout):
            async with self._advanced:
                await self._advanced.wait_for(lambda: self.position > offset)

    async def sync(self, timeout: float = 10.0) -> None:
        """Wait until every change written to the topic before this call is applied here.

        The router calls it before each batch: an event ingested after a subscription change
        was acknowledged is routed under that change, not under the set of a moment before.
        The end offset is asked on a connection of its own: on the follower's, it would queue
        behind the long-polling fetch (up to its fetch wait) on the broker.
        """
        await self.caught_up.wait()
        tp = TopicPartition(self.topic, 0)
        async with (
            self._offsets_starting
        ):  # syncs may overlap (the router checks a batch while handling the one before)
            if self._offsets is None:
                offsets = clients.consumer(self.bootstrap, enable_auto_commit=False)
                await offsets.start()
                self._offsets = offsets
        started_ms = time.time() * 1000
        end = (await self._offsets.end_offsets([tp]))[tp]
        if end > self.position:
            await self.wait_applied(end - 1, timeout)
        self._synced_from_ms = max(self._synced_from_ms, started_ms)

    async def sync_for(self, written_ms: int, timeout: float = 10.0) -> None:
        """`sync()` for records written at `written_ms` (their Kafka timestamp) or before: every
        change acknowledged before they were written is applied when this returns.

        A sync that started more than `CLOCK_MARGIN_MS` after they were written already covers
        them, so it is not repeated: a router working through a backlog (a reform-day burst)
        asks the broker nothing per batch, while fresh records still get a sync each batch.
        """
        if written_ms + CLOCK_MARGIN_MS < self._synced_from_ms:
            return
        await self.sync(timeout)
