"""Feed source throughput: simulator -> FolkeregisterFeedSource -> samband-ingest (acks=all).

Baseline, same run and same simulator: raw aiohttp fetches of the same pages and documents
(same concurrency) and aiokafka produces of the document bytes with acks=all, with no
mapping, encoding, dead letters or bookmarks. The simulator runs in its own process.

    .venv/bin/python bench/bench_feed_source.py [--events 20000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import time
import uuid

import aiohttp
from aiokafka import AIOKafkaProducer

from agents.config import bootstrap_servers
from connectors.folkeregister.simulator import API_PATH, DEFAULT_TOKEN, run_simulator
from connectors.folkeregister.source import FolkeregisterFeedSource
from connectors.runtime import open_connector
from connectors.synthetic import Simulation, SyntheticConfig


def serve(events: int, ready, stop) -> None:
    documents = itertools.islice(Simulation(SyntheticConfig(persons=20_000, seed=7)).events(years=None), events)

    async def main() -> None:
        async with run_simulator(documents) as simulator:
            ready.put(simulator.base_url)
            await asyncio.get_running_loop().run_in_executor(None, stop.wait)

    asyncio.run(main())


async def baseline(base_url: str, bootstrap: str, topic: str, concurrency: int) -> int:
    headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, max_batch_size=1 << 20)
    await producer.start()
    limit = asyncio.Semaphore(concurrency)
    count, seq = 0, 1
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 1)) as http:

        async def document(entry) -> bytes:
            async with limit, http.get(f"{base_url}{API_PATH}/{entry['hendelse']['hendelsesdokument']}", headers=headers) as r:
                return await r.read()

        while True:
            async with http.get(f"{base_url}{API_PATH}/feed?seq={seq}", headers=headers) as r:
                entries = json.loads(await r.read())
            if not entries:
                break
            bodies = await asyncio.gather(*(document(e) for e in entries))
            sends = [await producer.send(topic, value=b, key=e["hendelse"]["hendelsesdokument"].encode()) for e, b in zip(entries, bodies)]
            await asyncio.gather(*sends)
            count += len(entries)
            seq += len(entries)
    await producer.stop()
    return count


async def feed_source(base_url: str, bootstrap: str, app_id: str, concurrency: int) -> None:
    config = {"base_url": base_url, "token": DEFAULT_TOKEN, "stop_at_end": True, "document_concurrency": concurrency}
    async with open_connector(FolkeregisterFeedSource, "bench", config, bootstrap=bootstrap, app_id=app_id) as source:
        await source.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    bootstrap = bootstrap_servers()
    ready, stop = multiprocessing.Queue(), multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(args.events, ready, stop), daemon=True)
    server.start()
    base_url = ready.get(timeout=300)
    run_id = uuid.uuid4().hex[:8]
    rows = []
    try:
        start = time.perf_counter()
        count = asyncio.run(baseline(base_url, bootstrap, f"bench-baseline-{run_id}", args.concurrency))
        rows.append(("raw aiohttp + aiokafka (baseline)", count, time.perf_counter() - start))
        start = time.perf_counter()
        asyncio.run(feed_source(base_url, bootstrap, f"bench-{run_id}", args.concurrency))
        rows.append(("FolkeregisterFeedSource", count, time.perf_counter() - start))
    finally:
        stop.set()
        server.join(10)
    print(f"\n{args.events:,} events, pages of 1000, {args.concurrency} concurrent document fetches, broker {bootstrap}\n")
    print(f"{'pipeline':<36} {'events':>8} {'seconds':>8} {'events/s':>10} {'vs baseline':>12}")
    for name, events, seconds in rows:
        print(f"{name:<36} {events:>8,} {seconds:>8.2f} {events / seconds:>10,.0f} {rows[0][2] / seconds:>11.2f}x")


if __name__ == "__main__":
    main()
