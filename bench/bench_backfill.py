"""Backfill throughput, and live latency while a backfill runs, against the live router in the same run.

    .venv/bin/python bench/bench_backfill.py [--events 50000] [--repeat 3] [--live-rate 200]

Uses the broker at KAFKA_BOOTSTRAP_SERVERS / SAMBAND_KAFKA_BOOTSTRAP_SERVERS, else the local one.
Each run, in a router stage of its own (`samband worker --stage route`) with 18,000 subscriptions
(bench/bench_routing.py's: two national Death subscriptions match every event):
1. live: N Death events routed as they come (the baseline): N / (last - first delivery timestamp);
2. backfill: a new national Death subscription asks for a backfill from the start of the topic;
   its N deliveries, timed the same way, while a live load of `--live-rate` events/s flows; each
   live event's latency is its deliveries' timestamp minus its own (one host's clock), and the
   p99 of those is reported (the issue's target: live p99 < 1 s while a backfill runs).
Runs take turns (live, then backfill, per run); the table gives medians and ranges.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import date
from pathlib import Path
from statistics import median

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_routing import (
    PARTITIONS,
    _sub,
    canonical_events,
    create_topics,
    delete_topics,
    output_span,
    produce,
    stage,
    start_worker,
    stop,
    subscriptions,
)

from agents.config import bootstrap_servers
from agents.routing.backfill import BackfillRequest, summaries
from bus.topics import topic_names
from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.registry import CatalogRegistry


async def _ends(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
    finally:
        await consumer.stop()


async def _records_after(bootstrap: str, topic: str, starts: dict[TopicPartition, int], expected: int, proc):
    """Wait until `expected` records follow `starts` (polling end offsets only), then read them."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=10_000)
    await consumer.start()
    try:
        async with asyncio.timeout(900):
            while sum((await consumer.end_offsets(list(starts))).values()) - sum(starts.values()) < expected:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited with {proc.returncode}")
                await asyncio.sleep(0.2)
            consumer.assign(list(starts))
            for tp, offset in starts.items():
                consumer.seek(tp, offset)
            records = []
            while len(records) < expected:
                for batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                    records += batch
    finally:
        await consumer.stop()
    return records


async def _live_load(bootstrap: str, topic: str, messages, rate: float, stop_at: asyncio.Event) -> dict[str, float]:
    """Write `messages` at `rate` per second until they run out or `stop_at` is set; event id -> sent at (ms)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    await producer.start()
    sent: dict[str, float] = {}
    try:
        started = time.monotonic()
        for i, (key, value, event_id) in enumerate(messages):
            if stop_at.is_set():
                break
            ahead = started + i / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)  # the load's pace
            meta = await (await producer.send(topic, value, key=key))
            sent[event_id] = meta.timestamp
    finally:
        await producer.stop()
    return sent


async def one_run(bootstrap: str, n: int, live_rate: float, data_dir: Path, run: str) -> tuple[float, float, float]:
    app_id = f"bench-backfill-{run}"
    topics = topic_names(app_id)
    await create_topics(
        bootstrap,
        [topics.events, topics.deliveries, topics.deadletter],
        compacted=[topics.subscriptions, topics.backfills],
    )
    subs = subscriptions(18_000)
    await produce(bootstrap, topics.subscriptions, [(s.id.encode(), s.to_json()) for s in subs])
    await produce(bootstrap, topics.events, canonical_events(n))
    proc = start_worker(app_id, stage("route"), bootstrap, data_dir)
    try:
        live_span = await output_span(bootstrap, topics.deliveries, 2 * n, 600, proc)
        late = _sub("late-national-death", "all", "Death", ["deathDate"])
        await produce(bootstrap, topics.subscriptions, [(late.id.encode(), late.to_json())])
        starts = await _ends(bootstrap, topics.deliveries)
        request = BackfillRequest.new(late, date(2000, 1, 1), "bench")  # the whole topic
        codec = Codec(CatalogRegistry(catalog()))
        live_messages = [(k, v, codec.decode(v)["envelope"]["id"]) for k, v in canonical_events(max(1, n // 10))]
        stop_live = asyncio.Event()
        load = asyncio.ensure_future(_live_load(bootstrap, topics.events, live_messages, live_rate, stop_live))
        await produce(bootstrap, topics.backfills, [(late.id.encode(), request.to_json())])
        async with asyncio.timeout(900):
            while not any(s.done for s in await summaries(bootstrap, topics)):
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited with {proc.returncode}")
                await asyncio.sleep(0.5)  # polling the routers' progress
        stop_live.set()
        sent = await load
        # The backfill's N deliveries, and 3 per live event (the two national ones and the new one).
        after = await _records_after(bootstrap, topics.deliveries, starts, n + 3 * len(sent), proc)
        backfilled = [r for r in after if b'"backfill":"true"' in r.value]
        backfill_span = (max(r.timestamp for r in backfilled) - min(r.timestamp for r in backfilled)) / 1000
        latencies = sorted(
            r.timestamp - sent[event_id]
            for r in after
            if b'"backfill"' not in r.value and (event_id := orjson.loads(r.value)["event"]["id"]) in sent
        )
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1000 if latencies else float("nan")
    finally:
        stop(proc)
        await delete_topics(bootstrap, app_id)
    return n / live_span, n / max(backfill_span, 0.001), p99


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--live-rate", type=float, default=200.0, help="live events/s while the backfill runs")
    args = parser.parse_args()
    bootstrap = bootstrap_servers()
    data_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-backfill-{uuid.uuid4().hex[:6]}"
    data_dir.mkdir(parents=True)
    live, backfill, p99s = [], [], []
    for repeat in range(args.repeat):
        rates = await one_run(bootstrap, args.events, args.live_rate, data_dir, f"{uuid.uuid4().hex[:6]}-{repeat}")
        live.append(rates[0])
        backfill.append(rates[1])
        p99s.append(rates[2])
        print(
            f"run {repeat + 1}: live {rates[0]:,.0f}/s, backfill {rates[1]:,.0f}/s, live p99 {rates[2] * 1000:.0f} ms"
        )
    print(
        f"\n{args.events:,} Death events, {PARTITIONS} partitions, 18,000 subscriptions, {args.repeat} runs; "
        f"a live load of {args.live_rate:g} events/s during each backfill"
    )
    print(f"{'':<42} {'median':>10} {'range':>19}")
    for name, values, unit in (
        ("live routing, events/s", live, ""),
        ("backfill to one subscription, events/s", backfill, ""),
        ("live p99 during the backfill, ms", [p * 1000 for p in p99s], ""),
    ):
        print(f"{name:<42} {median(values):>10,.0f} {min(values):>9,.0f}-{max(values):,.0f}{unit}")
    ratio = [b / v for b, v in zip(backfill, live, strict=True)]
    print(f"backfill / live routing, per run: {', '.join(f'{r:.2f}' for r in ratio)}")
    per_5_5m = 5_500_000 / median(backfill) / 60
    print(f"at the median, 5.5 M events would take {per_5_5m:.0f} minutes (target < 15) on this machine")


if __name__ == "__main__":
    asyncio.run(main())
