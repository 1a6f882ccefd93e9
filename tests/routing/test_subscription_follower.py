"""The subscriptions follower on the real broker: `sync()` returns only once every change written
before the call is applied, so the router never routes under a set older than an acknowledged change."""

from __future__ import annotations

import asyncio

from agents.subscriptions.store import SubscriptionFollower, write
from subscription_factory import subscription


async def test_sync_applies_every_change_acknowledged_before_it(kafka_bootstrap, new_topic):
    topic = await new_topic(partitions=1, config={"cleanup.policy": "compact"})
    known: dict[str, object] = {}
    follower = SubscriptionFollower(kafka_bootstrap, topic, lambda s: known.__setitem__(s.id, s), lambda i: known.pop(i, None))
    task = asyncio.create_task(follower.run())
    try:
        async with asyncio.timeout(30):
            await follower.caught_up.wait()
            for n in range(20):
                sub = subscription(f"sync-{n}", ["4601"], ["Death"], {"Death": ["deathDate"]})
                await write(kafka_bootstrap, topic, [(sub.id, sub.to_json())])
                await follower.sync()
                assert sub.id in known, f"change {n} acknowledged but not applied after sync()"
            await write(kafka_bootstrap, topic, [("sync-0", None)])
            await follower.sync()
            assert "sync-0" not in known
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
