"""The subscriptions follower on the real broker: `sync()` returns only once every change written
before the call is applied, so the router never routes under a set older than an acknowledged change."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from contextlib import asynccontextmanager
from types import SimpleNamespace

from subscription_factory import subscription

from agents.routing.index import RoutingIndex
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
        assert set(known) == {"real"} and follower.subscription("real").kommuner == ["4601"]


KOMMUNER = ["0301", "4601", "5001", "1103", "3201", "1508"]


def test_a_subscription_costs_the_worker_a_couple_of_kilobytes_not_six():
    """A national worker holds 18,000 subscriptions: as parsed models, in the follower and the
    router's index, they were about 5.7 KB each (over 100 MiB of each worker process, measured
    with tracemalloc in a national run). The follower keeps their JSON and the index what routing
    reads of them."""
    follower = SubscriptionFollower("127.0.0.1:1", "unused")  # (not run: records are applied by hand)
    index = RoutingIndex()
    follower.listen(index.put, index.remove)
    subs = [
        subscription(f"k{n:04d}-memory", [KOMMUNER[n % len(KOMMUNER)]], ["Move", "Death"], {"Move": ["envelope.person", "movedDate", "newAddress"], "Death": ["deathDate"]})
        for n in range(2000)
    ]  # fmt: skip
    records = [SimpleNamespace(key=sub.id.encode(), value=sub.to_json(), offset=n) for n, sub in enumerate(subs)]
    del subs
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for record in records:
            follower._apply(record)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not tracing:
            tracemalloc.stop()
    assert len(index) == len(follower.current) == 2000
    assert follower.subscription("k0007-memory").event_types == ["Move", "Death"]
    assert held / 2000 < 3000, f"{held / 2000:,.0f} bytes a subscription"
