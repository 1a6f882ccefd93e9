"""The stages are built, not imported (agents/assembly.py): two pipelines built in one process are
independent. Each ingests, routes and delivers its own events, under its own subscriptions, to
its own topics; nothing of one reaches the other."""

from __future__ import annotations

import asyncio

from kafka_io import produce, read_to_end
from routing_events import encode, event, synthetic_number
from subscription_factory import subscription
from support import unique_name

from agents.assembly import Stages, build_stages
from agents.config import Settings
from agents.subscriptions.store import ensure_topic, write
from bus.reading import read_topic


async def _records_once_there(bootstrap: str, topic: str, timeout: float = 90.0) -> list:
    """The records on `topic`, once it has some (a subscriber's topic is made by the bus)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if records := [r async for r in read_topic(bootstrap, topic, timeout=10)]:
            return records
        await asyncio.sleep(0.2)  # poll interval inside the deadline
    raise AssertionError(f"nothing on {topic} within {timeout:.0f} s")


async def test_two_pipelines_in_one_process_carry_only_their_own_events(kafka_bootstrap, tmp_path):
    pipelines = {}
    for name, day in (("oslo", 3), ("alta", 4)):
        app_id = unique_name(f"two-{name}")
        settings = Settings(
            app_id=app_id,
            kafka_bootstrap_servers=kafka_bootstrap,
            data_dir=str(tmp_path / name),
            subscriber_topic_prefix=f"subscriber.{app_id}.",
        )
        runtime, services = build_stages(settings)
        death = event("Death", synthetic_number(day, 5, 44, 300), ["0301"])
        pipelines[name] = (settings, runtime, Stages(services), death)

    for settings, runtime, _, _ in pipelines.values():
        sub = subscription(f"{settings.app_id}-sub", ["0301"], ["Death"], {"Death": ["deathDate"]}, public_body=False)
        await ensure_topic(kafka_bootstrap, runtime.topics.subscriptions)
        await write(kafka_bootstrap, runtime.topics.subscriptions, [(sub.id, sub.to_json())])
    try:
        for _, _, stages, _ in pipelines.values():
            await stages.start()
        for _, runtime, _, death in pipelines.values():
            await produce(kafka_bootstrap, runtime.topics.ingest, [encode(death)])

        for settings, runtime, _, death in pipelines.values():
            sub_id = f"{settings.app_id}-sub"
            delivered = await _records_once_there(kafka_bootstrap, f"{settings.subscriber_topic_prefix}{sub_id}")
            keys = {dict(r.headers)["samband-idempotency-key"].decode() for r in delivered}
            assert keys == {f"{death['envelope']['id']}.{sub_id}"}
            routed = await read_to_end(kafka_bootstrap, runtime.topics.deliveries)
            assert [r.key.decode().split("/")[0] for r in routed] == [sub_id]  # its own subscription only
        # Each pipeline's router knows its own subscription, and the HTTP API's view (the follower's) too.
        assert [sorted(rt.subscriptions.current) for _, rt, _, _ in pipelines.values()] == [
            [f"{s.app_id}-sub"] for s, _, _, _ in pipelines.values()
        ]
    finally:
        for _, _, stages, _ in pipelines.values():
            await stages.stop()
