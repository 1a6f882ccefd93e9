"""The subscriptions follower on the real broker: `sync()` returns only once every change written
before the call is applied, so the router never routes under a set older than an acknowledged change."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

from subscription_factory import subscription

from agents.subscriptions.store import CLOCK_MARGIN_MS, SubscriptionFollower, write


@asynccontextmanager
async def following(bootstrap: str, topic: str):
    """A follower of `topic`, running, and the subscriptions it has applied (id -> subscription)."""
    follower = SubscriptionFollower(bootstrap, topic)
    known = follower.current
    task = asyncio.create_task(follower.run())
    try:
        async with asyncio.timeout(30):
            yield follower, known
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_sync_applies_every_change_acknowledged_before_it(kafka_bootstrap, new_topic):
    topic = await new_topic(partitions=1, config={"cleanup.policy": "compact"})
    async with following(kafka_bootstrap, topic) as (follower, known):
        await follower.caught_up.wait()
        for n in range(20):
            sub = subscription(f"sync-{n}", ["4601"], ["Death"], {"Death": ["deathDate"]})
            await write(kafka_bootstrap, topic, [(sub.id, sub.to_json())])
            await follower.sync()
            assert sub.id in known, f"change {n} acknowledged but not applied after sync()"
        await write(kafka_bootstrap, topic, [("sync-0", None)])
        await follower.sync()
        assert "sync-0" not in known


async def test_syncs_may_overlap_from_the_first(kafka_bootstrap, new_topic):
    # The router checks a batch while it handles the one before: two syncs at once, before any
    # sync has opened its connection.
    topic = await new_topic(partitions=1, config={"cleanup.policy": "compact"})
    sub = subscription("overlap", ["4601"], ["Death"], {"Death": ["deathDate"]})
    await write(kafka_bootstrap, topic, [(sub.id, sub.to_json())])
    async with following(kafka_bootstrap, topic) as (follower, known):
        await asyncio.gather(*(follower.sync() for _ in range(3)))
        assert sub.id in known


async def test_sync_for_asks_the_broker_only_for_records_written_after_the_last_sync(kafka_bootstrap, new_topic):
    # A router working through a backlog does not ask for the topic's end offset each batch: a
    # sync that started after the records were written (plus the clock margin) covers them.
    topic = await new_topic(partitions=1, config={"cleanup.policy": "compact"})
    async with following(kafka_bootstrap, topic) as (follower, known):
        syncs = 0
        real_sync = follower.sync

        async def counted_sync(timeout: float = 10.0) -> None:
            nonlocal syncs
            syncs += 1
            await real_sync(timeout)

        follower.sync = counted_sync
        await follower.caught_up.wait()
        now_ms = int(time.time() * 1000)
        await follower.sync_for(now_ms)
        assert syncs == 1
        await follower.sync_for(now_ms - CLOCK_MARGIN_MS - 1_000)  # written well before that sync
        assert syncs == 1
        # A change acknowledged, then a record written after it: synced, and the change applied.
        sub = subscription("sync-for", ["4601"], ["Death"], {"Death": ["deathDate"]})
        await write(kafka_bootstrap, topic, [(sub.id, sub.to_json())])
        await follower.sync_for(int(time.time() * 1000))
        assert syncs == 2 and sub.id in known


async def test_a_record_whose_body_names_another_id_than_its_key_is_not_a_subscription(kafka_bootstrap, new_topic):
    """A tombstone deletes by key: a body under another key could not be deleted, and would override
    the subscription it names."""
    topic = await new_topic(partitions=1, config={"cleanup.policy": "compact"})
    real = subscription("real", ["4601"], ["Death"], {"Death": ["deathDate"]})
    impostor = subscription("real", ["0301"], ["Death"], {"Death": ["deathDate"]})  # the same id, other kommuner
    await write(kafka_bootstrap, topic, [(real.id, real.to_json()), ("other", impostor.to_json())])
    async with following(kafka_bootstrap, topic) as (follower, known):
        await follower.sync()
        assert set(known) == {"real"} and known["real"].kommuner == ["4601"]
