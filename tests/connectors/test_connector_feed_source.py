"""The Folkeregister feed source against the simulator and a real broker."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from connector_fixtures import synthetic_feed
from kafka_io import event_id, read_to_end
from support import dead_letter_key, open_dead_letter, pseudonym_key

from bus.topics import topic_names
from connectors.dead_letters import DeadLetter
from connectors.folkeregister.feed_format import BULK_PATH, UNUSUAL_TYPES
from connectors.folkeregister.source import FeedError, FolkeregisterFeedSource
from connectors.runtime import open_connector
from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.registry import CatalogRegistry
from synthetic.folkeregister_simulator import DEFAULT_TOKEN, Faults, run_simulator

CODEC = Codec(CatalogRegistry(catalog()))
FETCH_MODES = pytest.mark.parametrize("fetch", ["bulk", "single"])


def feed_config(simulator, **overrides) -> dict:
    return {"base_url": simulator.base_url, "token": DEFAULT_TOKEN, "stop_at_end": True,
            "backoff_initial_s": 0.01, "backoff_max_s": 0.2, **overrides}  # fmt: skip


async def run_to_end(bootstrap, app_id, config, instance="feed") -> None:
    async with open_connector(
        FolkeregisterFeedSource,
        instance,
        config,
        bootstrap=bootstrap,
        app_id=app_id,
        pseudonym_key=pseudonym_key(),
        dead_letter_key=dead_letter_key(),
    ) as source:
        await asyncio.wait_for(source.run(), 60)


async def ingested_and_dead_keys(bootstrap, app_id) -> list[str]:
    topics = topic_names(app_id)
    keys = [event_id(r) for r in await read_to_end(bootstrap, topics.ingest)]
    return keys + [r.key.decode() for r in await read_to_end(bootstrap, topics.deadletter)]


@pytest.mark.parametrize(("fetch", "workers"), [("bulk", 1), ("bulk", 2), ("single", 0)])
async def test_feed_reaches_ingest_in_order_and_unknown_types_are_dead_lettered(
    kafka_bootstrap, connector_app_id, fetch, workers
):
    documents = synthetic_feed(2500)
    unknown = [d for d in documents if d.hendelsetype in UNUSUAL_TYPES]
    assert unknown, "the synthetic feed should hold a few unknown types"
    async with run_simulator(documents) as simulator:
        config = feed_config(simulator, document_fetch=fetch, encode_workers=workers)
        await run_to_end(kafka_bootstrap, connector_app_id, config)

    topics = topic_names(connector_app_id)
    ingested = await read_to_end(kafka_bootstrap, topics.ingest)
    dead = await read_to_end(kafka_bootstrap, topics.deadletter)
    decoded = [CODEC.decode(r.value) for r in ingested]
    sequence = [r["envelope"]["sequenceNumber"] for r in decoded]
    assert sequence == sorted(sequence) and len(sequence) == len(set(sequence))
    assert [event_id(r) for r in ingested] == [r["envelope"]["id"] for r in decoded]
    assert {event_id(r) for r in ingested} | {r.key.decode() for r in dead} == {d.hendelsesdokument for d in documents}
    assert {r.key.decode() for r in dead} >= {d.hendelsesdokument for d in unknown}
    first_unknown = next(r for r in dead if r.key.decode() == unknown[0].hendelsesdokument)
    letter = DeadLetter.from_headers(first_unknown.headers)
    assert (letter.reason, letter.stage) == ("event.unknown_type", "source")
    assert (
        json.loads(open_dead_letter(first_unknown.value))["hendelsetype"] == unknown[0].hendelsetype
    )  # the raw document, sealed
    assert dict(first_unknown.headers)["samband-source"] == b"feed"

    async with open_connector(
        FolkeregisterFeedSource,
        "feed",
        feed_config(simulator),
        bootstrap=kafka_bootstrap,
        app_id=connector_app_id,
        pseudonym_key=pseudonym_key(),
        dead_letter_key=dead_letter_key(),
    ) as source:
        assert await source.context.state.load() == {"next_seq": len(documents) + 1}


@FETCH_MODES
async def test_a_restart_resumes_after_its_bookmark(kafka_bootstrap, connector_app_id, capture_connector_logs, fetch):
    documents = synthetic_feed(2200)
    async with run_simulator(documents[:1200]) as simulator:
        await run_to_end(kafka_bootstrap, connector_app_id, feed_config(simulator, document_fetch=fetch))
        simulator.append(documents[1200:])
        await run_to_end(kafka_bootstrap, connector_app_id, feed_config(simulator, document_fetch=fetch))

    keys = await ingested_and_dead_keys(kafka_bootstrap, connector_app_id)
    assert sorted(keys) == sorted(d.hendelsesdokument for d in documents)  # each exactly once
    resumes = [e for e in capture_connector_logs if e["event"] == "feed.resume"]
    assert [(e["from_bookmark"], e["next_seq"]) for e in resumes] == [(False, 1), (True, 1201)]


async def test_bulk_fetch_asks_once_per_page_and_no_document_one_by_one(kafka_bootstrap, connector_app_id):
    documents = synthetic_feed(2500)
    async with run_simulator(documents) as simulator:
        async with open_connector(
            FolkeregisterFeedSource,
            "feed",
            feed_config(simulator),
            bootstrap=kafka_bootstrap,
            app_id=connector_app_id,
            pseudonym_key=pseudonym_key(),
            dead_letter_key=dead_letter_key(),
        ) as source:
            requests: list[tuple[str, str]] = []
            original_get, original_post = source.http.get, source.http.post

            def get(url, headers):
                requests.append(("GET", url.removeprefix(simulator.base_url)))
                return original_get(url, headers=headers)

            def post(url, headers, data):
                requests.append(("POST", url.removeprefix(simulator.base_url)))
                return original_post(url, headers=headers, data=data)

            source.http.get, source.http.post = get, post
            await asyncio.wait_for(source.run(), 60)

    assert all((method == "POST" and path == BULK_PATH) or "/feed?seq=" in path for method, path in requests)
    assert sum(method == "POST" for method, _ in requests) == 3  # pages of 1000, 1000 and 500
    assert len(await ingested_and_dead_keys(kafka_bootstrap, connector_app_id)) == len(documents)


async def test_auto_fetches_documents_one_by_one_from_a_feed_without_bulk(
    kafka_bootstrap, connector_app_id, capture_connector_logs
):
    documents = synthetic_feed(1500)
    async with run_simulator(documents, bulk=False) as simulator:
        await run_to_end(kafka_bootstrap, connector_app_id, feed_config(simulator))
        with pytest.raises(FeedError):
            await run_to_end(
                kafka_bootstrap,
                connector_app_id,
                feed_config(simulator, document_fetch="bulk", start_seq=1),
                "bulk-only",
            )

    keys = await ingested_and_dead_keys(kafka_bootstrap, connector_app_id)
    assert sorted(keys) == sorted(d.hendelsesdokument for d in documents)
    fallbacks = [e for e in capture_connector_logs if e["event"] == "feed.bulk_unavailable"]
    assert [(e["connector"], e["document_fetch"]) for e in fallbacks] == [("feed", "single")]  # once, then one by one


@FETCH_MODES
async def test_missing_event_documents_are_dead_lettered_with_their_entries(kafka_bootstrap, connector_app_id, fetch):
    documents = synthetic_feed(1200)
    lost = [documents[500], *documents[1000:]]  # one in the first page, all of the second
    async with run_simulator(documents) as simulator:
        for document in lost:  # the register lost them
            del simulator.store._sequence_by_id[uuid.UUID(document.hendelsesdokument).bytes]
        await run_to_end(kafka_bootstrap, connector_app_id, feed_config(simulator, document_fetch=fetch))

    topics = topic_names(connector_app_id)
    dead = {r.key.decode(): r for r in await read_to_end(kafka_bootstrap, topics.deadletter)}
    for document in lost:
        letter = DeadLetter.from_headers(dead[document.hendelsesdokument].headers)
        assert letter.reason == "source.document_missing"
        assert (
            json.loads(open_dead_letter(dead[document.hendelsesdokument].value)) == document.feed_entry()
        )  # the raw entry
    assert sorted(await ingested_and_dead_keys(kafka_bootstrap, connector_app_id)) == sorted(
        d.hendelsesdokument for d in documents
    )


@pytest.mark.parametrize(("fetch", "share"), [("bulk", 0.3), ("single", 0.05)])
async def test_faulty_feed_loses_nothing_and_logs_its_backoff(
    kafka_bootstrap, connector_app_id, capture_connector_logs, fetch, share
):
    documents = synthetic_feed(1500)
    faults = Faults(throttle_share=share, error_share=share, retry_after_s=0, seed=3)  # bulk makes few requests
    async with run_simulator(documents, faults=faults) as simulator:
        await run_to_end(kafka_bootstrap, connector_app_id, feed_config(simulator, document_fetch=fetch))

    keys = await ingested_and_dead_keys(kafka_bootstrap, connector_app_id)
    assert sorted(keys) == sorted(d.hendelsesdokument for d in documents)  # each exactly once, none lost
    events = [e["event"] for e in capture_connector_logs]
    assert "feed.throttled" in events and "feed.backoff" in events
    backoff = next(e for e in capture_connector_logs if e["event"] == "feed.backoff")
    assert backoff["status"] == 500 and backoff["delay_s"] > 0 and backoff["connector"] == "feed"


async def test_end_of_feed_is_polled_with_if_none_match(kafka_bootstrap, connector_app_id):
    documents = synthetic_feed(10)
    async with run_simulator(documents) as simulator:
        config = feed_config(simulator, stop_at_end=False, poll_interval_s=0.05)
        async with open_connector(
            FolkeregisterFeedSource,
            "feed",
            config,
            bootstrap=kafka_bootstrap,
            app_id=connector_app_id,
            pseudonym_key=pseudonym_key(),
            dead_letter_key=dead_letter_key(),
        ) as source:
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
