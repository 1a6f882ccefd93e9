"""The Folkeregister feed source against the simulator and a real broker."""

from __future__ import annotations

import asyncio
import json

from connector_fixtures import synthetic_feed
from kafka_io import read_to_end

from connectors.dead_letters import DeadLetter
from connectors.folkeregister.feed_format import UNUSUAL_TYPES
from connectors.folkeregister.simulator import DEFAULT_TOKEN, Faults, run_simulator
from connectors.folkeregister.source import FolkeregisterFeedSource
from connectors.runtime import Topics, open_connector
from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.registry import CatalogRegistry

CODEC = Codec(CatalogRegistry(catalog()))


def feed_config(simulator, **overrides) -> dict:
    return {"base_url": simulator.base_url, "token": DEFAULT_TOKEN, "stop_at_end": True,
            "backoff_initial_s": 0.01, "backoff_max_s": 0.2, **overrides}  # fmt: skip


async def run_to_end(bootstrap, app_id, config, instance="feed") -> None:
    async with open_connector(FolkeregisterFeedSource, instance, config, bootstrap=bootstrap, app_id=app_id) as source:
        await asyncio.wait_for(source.run(), 60)


async def test_feed_reaches_ingest_in_order_and_unknown_types_are_dead_lettered(kafka_bootstrap, connector_app_id):
    documents = synthetic_feed(2500)
    unknown = [d for d in documents if d.hendelsetype in UNUSUAL_TYPES]
    assert unknown, "the synthetic feed should hold a few unknown types"
    async with run_simulator(documents) as simulator:
        await run_to_end(kafka_bootstrap, connector_app_id, feed_config(simulator))

    topics = Topics.for_app(connector_app_id)
    ingested = await read_to_end(kafka_bootstrap, topics.ingest)
    dead = await read_to_end(kafka_bootstrap, topics.deadletter)
    decoded = [CODEC.decode(r.value) for r in ingested]
    sequence = [r["envelope"]["sequenceNumber"] for r in decoded]
    assert sequence == sorted(sequence) and len(sequence) == len(set(sequence))
    assert [r.key.decode() for r in ingested] == [r["envelope"]["id"] for r in decoded]
    assert {r.key.decode() for r in ingested} | {r.key.decode() for r in dead} == {d.hendelsesdokument for d in documents}
    assert {r.key.decode() for r in dead} >= {d.hendelsesdokument for d in unknown}
    first_unknown = next(r for r in dead if r.key.decode() == unknown[0].hendelsesdokument)
    letter = DeadLetter.from_headers(first_unknown.headers)
    assert (letter.reason, letter.stage) == ("event.unknown_type", "source")
    assert json.loads(first_unknown.value)["hendelsetype"] == unknown[0].hendelsetype  # the raw document
    assert dict(first_unknown.headers)["samband-source"] == b"feed"

    async with open_connector(FolkeregisterFeedSource, "feed", feed_config(simulator), bootstrap=kafka_bootstrap, app_id=connector_app_id) as source:
        assert await source.context.state.load() == {"next_seq": len(documents) + 1}


async def test_faulty_feed_loses_nothing_and_logs_its_backoff(kafka_bootstrap, connector_app_id, capture_connector_logs):
    documents = synthetic_feed(1500)
    faults = Faults(throttle_share=0.05, error_share=0.05, retry_after_s=0, seed=3)
    async with run_simulator(documents, faults=faults) as simulator:
        await run_to_end(kafka_bootstrap, connector_app_id, feed_config(simulator))

    topics = Topics.for_app(connector_app_id)
    keys = [r.key.decode() for r in await read_to_end(kafka_bootstrap, topics.ingest)]
    keys += [r.key.decode() for r in await read_to_end(kafka_bootstrap, topics.deadletter)]
    assert sorted(keys) == sorted(d.hendelsesdokument for d in documents)  # each exactly once, none lost
    events = [e["event"] for e in capture_connector_logs]
    assert "feed.throttled" in events and "feed.backoff" in events
    backoff = next(e for e in capture_connector_logs if e["event"] == "feed.backoff")
    assert backoff["status"] == 500 and backoff["delay_s"] > 0 and backoff["connector"] == "feed"


async def test_end_of_feed_is_polled_with_if_none_match(kafka_bootstrap, connector_app_id):
    documents = synthetic_feed(10)
    async with run_simulator(documents) as simulator:
        config = feed_config(simulator, stop_at_end=False, poll_interval_s=0.05)
        async with open_connector(FolkeregisterFeedSource, "feed", config, bootstrap=kafka_bootstrap, app_id=connector_app_id) as source:
            seen: list[tuple[str, int]] = []
            original_get = source.http.get

            def spy(url, headers):  # records what the source asked and whether it sent an ETag
                seen.append((headers.get("If-None-Match"), url))
                return original_get(url, headers=headers)

            source.http.get = spy
            task = asyncio.create_task(source.run())
            async with asyncio.timeout(20):
                while not any(etag and "feed?seq=11" in url for etag, url in seen):
                    await asyncio.sleep(0.02)  # poll interval inside a deadline
            source.stopping.set()
            await asyncio.wait_for(task, 10)
