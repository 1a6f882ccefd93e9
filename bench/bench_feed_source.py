"""Feed source throughput: simulator -> FolkeregisterFeedSource -> samband-ingest (acks=all).

Baseline, same run and same simulator: raw aiohttp fetches of the same pages and their
documents, fetched the same way as the source (`--fetch bulk`: one POST of a page's ids to the
simulator's bulk endpoint; `single`: one GET per document, `--concurrency` at once), and
aiokafka produces of the document bytes with acks=all, with no mapping, encoding, dead letters
or bookmarks. The simulator runs in its own process. Both pipelines' topics are created before
the clock starts, as in a deployment. The source is timed twice: in all (with what every start
costs: the Kafka clients, the encode worker's start, the bookmark's load), and from the moment
its bookmark is loaded.

    .venv/bin/python bench/bench_feed_source.py [--events 20000] [--fetch bulk|single] [--concurrency 64]
        [--encode-workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
import time
import uuid

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from agents.config import bootstrap_servers
from bus.topics import CONNECTOR_STATE, ensure_topics, topic_names
from connectors.folkeregister.feed_format import API_PATH, BULK_PATH
from connectors.folkeregister.source import FolkeregisterFeedSource
from connectors.runtime import open_connector
from synthetic import Simulation, SyntheticConfig
from synthetic.folkeregister_simulator import DEFAULT_TOKEN, run_simulator

PARTITIONS = 4  # the local broker's default
os.environ["SAMBAND_PARTITIONS"] = str(PARTITIONS)  # the bus's layout, as the bench makes its topics
DEAD_LETTER_KEY = bytes(32)  # this run's dead letters need no secrecy
PSEUDONYM_KEY = b"bench-pseudonym-key-of-at-least-32-bytes"


async def create_topics(bootstrap: str, baseline_topic: str, app_id: str) -> None:
    topics = topic_names(app_id)
    await CONNECTOR_STATE.ensure(bootstrap, app_id)
    await ensure_topics(bootstrap, {t: {} for t in (baseline_topic, topics.ingest, topics.deadletter)}, PARTITIONS)


def serve(events: int, ready, stop) -> None:
    documents = itertools.islice(Simulation(SyntheticConfig(persons=20_000, seed=7)).events(years=None), events)

    async def main() -> None:
        async with run_simulator(documents) as simulator:
            ready.put(simulator.base_url)
            await asyncio.get_running_loop().run_in_executor(None, stop.wait)

    asyncio.run(main())


async def baseline(base_url: str, bootstrap: str, topic: str, fetch: str, concurrency: int) -> int:
    headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, max_batch_size=1 << 20
    )
    await producer.start()
    limit = asyncio.Semaphore(concurrency)
    count, seq = 0, 1
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 1)) as http:

        async def document(document_id: str) -> bytes:
            async with limit, http.get(f"{base_url}{API_PATH}/{document_id}", headers=headers) as r:
                return await r.read()

        async def documents(ids: list[str]) -> list[bytes]:
            async with http.post(base_url + BULK_PATH, data=orjson.dumps(ids), headers=headers) as r:
                return (await r.read()).split(b"\n")[:-1]

        while True:
            async with http.get(f"{base_url}{API_PATH}/feed?seq={seq}", headers=headers) as r:
                entries = orjson.loads(await r.read())
            if not entries:
                break
            ids = [e["hendelse"]["hendelsesdokument"] for e in entries]
            bodies = await documents(ids) if fetch == "bulk" else await asyncio.gather(*(document(i) for i in ids))
            sends = [
                await producer.send(topic, value=b, key=e["hendelse"]["hendelsesdokument"].encode())
                for e, b in zip(entries, bodies, strict=False)
            ]
            await asyncio.gather(*sends)
            count += len(entries)
            seq += len(entries)
    await producer.stop()
    return count


class TimedFeedSource(FolkeregisterFeedSource):
    async def _poll(self, next_seq: int) -> None:
        self.bookmark_loaded_at = time.perf_counter()  # run() calls _poll right after loading it
        await super()._poll(next_seq)


async def feed_source(base_url: str, bootstrap: str, app_id: str, args: argparse.Namespace) -> float:
    """Runs the source to the end of the feed; returns when its bookmark was loaded."""
    config = {"base_url": base_url, "token": DEFAULT_TOKEN, "stop_at_end": True, "document_fetch": args.fetch,
              "document_concurrency": args.concurrency, "encode_workers": args.encode_workers}  # fmt: skip
    async with open_connector(
        TimedFeedSource,
        "bench",
        config,
        bootstrap=bootstrap,
        app_id=app_id,
        pseudonym_key=PSEUDONYM_KEY,
        dead_letter_key=DEAD_LETTER_KEY,
    ) as source:
        await source.run()
        return source.bookmark_loaded_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--fetch", choices=("bulk", "single"), default="bulk", help="how event documents are fetched")
    parser.add_argument("--concurrency", type=int, default=64, help="documents fetched at once (single)")
    parser.add_argument("--encode-workers", type=int, default=1, help="the source's mapping and encoding processes")
    args = parser.parse_args()
    bootstrap = bootstrap_servers()
    ready, stop = multiprocessing.Queue(), multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(args.events, ready, stop), daemon=True)
    server.start()
    base_url = ready.get(timeout=300)
    run_id = uuid.uuid4().hex[:8]
    baseline_topic, app_id = f"bench-baseline-{run_id}", f"bench-{run_id}"
    asyncio.run(create_topics(bootstrap, baseline_topic, app_id))
    rows = []
    try:
        start = time.perf_counter()
        count = asyncio.run(baseline(base_url, bootstrap, baseline_topic, args.fetch, args.concurrency))
        rows.append(("raw aiohttp + aiokafka (baseline)", count, time.perf_counter() - start))
        start = time.perf_counter()
        streaming = asyncio.run(feed_source(base_url, bootstrap, app_id, args))
        end = time.perf_counter()
        rows.append(("FolkeregisterFeedSource", count, end - start))
        rows.append(("  from its bookmark loaded", count, end - streaming))
    finally:
        stop.set()
        server.join(10)
    fetching = "bulk document fetches" if args.fetch == "bulk" else f"{args.concurrency} concurrent document fetches"
    print(f"\n{args.events:,} events, pages of 1000, {fetching}, broker {bootstrap}\n")
    print(f"{'pipeline':<36} {'events':>8} {'seconds':>8} {'events/s':>10} {'vs baseline':>12}")
    for name, events, seconds in rows:
        print(f"{name:<36} {events:>8,} {seconds:>8.2f} {events / seconds:>10,.0f} {rows[0][2] / seconds:>11.2f}x")


if __name__ == "__main__":
    main()
