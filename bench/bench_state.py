"""The router at national scale: its memory and its throughput with 5.5 M persons and 20 M routing records.

    .venv/bin/python bench/bench_state.py [--persons 5500000] [--records 20000000] [--events 50000] [--repeat 3]

Uses the broker at KAFKA_BOOTSTRAP_SERVERS / SAMBAND_KAFKA_BOOTSTRAP_SERVERS, else the local one.
The router's state is written straight into its changelogs first, as a worker that has routed for
years would have left them: `--persons` person states (`router-persons`, random keys as
pseudonyms are, each naming the 10 subscriptions that received data) and `--records` routing
records (`router-records`, random event ids, 10 subscriptions each, in segments as the router
writes them). Then `samband worker --stage route` starts,
reads that state into its on-disk store (bus/store.py), and routes `--events` Death events (18,000
subscriptions, 2 matching each event). The events are of at most 50,000 persons (synthetic
identity numbers), whose state was written among all the others, so their reads are spread over
the whole table's files; a read of a routing record (a correction) is not measured.

Compared, in turns, in the same invocation:
- raw aiokafka consume -> produce of the same events (the baseline of bench_routing.py);
- the router with 50,000 persons (and routing records in the same proportion);
- the router with `--persons` persons and `--records` routing records.

It prints, per contender, routing throughput (first to last output, so the recovery is not
counted), the worker's peak RSS (VmHWM, recovery included), the time from the worker's start to
its first output (start-up, group join and recovery), the same after the worker is stopped cleanly
and started again on its data directory (it resumes its state from its checkpoint, docs/state.md),
and the state's size on disk then.
The persons have no identity number kept for life stages, so the life-stage schedule, which is
in memory (docs/life-stages.md), is empty here.
Targets (issue 17): peak RSS <= 1 GiB at national scale; throughput at national scale >= 0.8x
the throughput at 50,000 persons.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from statistics import median

from bench_routing import (
    KEY,
    PARTITIONS,
    create_topics,
    delete_topics,
    output_span,
    peak_rss_mib,
    produce,
    raw_passthrough,
    stage,
    start_worker,
    stop,
    subscriptions,
    synthetic_numbers,
)
from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.config import bootstrap_servers  # noqa: E402
from agents.routing.router import PersonState  # noqa: E402
from bus.state import stored_json  # noqa: E402
from bus.topics import topic_names  # noqa: E402
from schemas.catalog import catalog  # noqa: E402
from schemas.codec import Codec  # noqa: E402
from schemas.examples import example  # noqa: E402
from schemas.kommuner import kommuner  # noqa: E402
from schemas.pseudonym import pseudonym  # noqa: E402
from schemas.registry import CatalogRegistry  # noqa: E402

SEGMENT_ENTRIES = 1_000  # routing records per changelog segment (the router closes one at ~128 KB)
FAN_OUT = 10  # systems sent each event, and systems that received data on each person


def fill_changelogs(bootstrap: str, app_id: str, event_persons: list[str], persons: int, records: int) -> None:
    """Person states for the event persons and `persons` in all, and `records` routing records,
    written with librdkafka (the murmur2 partitioner: a person's state in their key's partition).
    Keys are random, as pseudonyms (HMAC) and event ids (UUIDs) are; each person received data
    from, and each event went to, FAN_OUT of the 18,000 subscriptions."""
    topics = topic_names(app_id)
    rng = random.Random(20)
    sub_ids = [s.id for s in subscriptions(18_000)]
    fan_outs = [sorted(rng.sample(sub_ids, FAN_OUT)) for _ in range(1_000)]
    producer = Producer(
        {"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 50, "acks": "all",
         "batch.size": 1_000_000, "queue.buffering.max.messages": 1_000_000}
    )  # fmt: skip

    def send(topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        while True:
            try:
                if partition is None:
                    producer.produce(topic, value, key)
                else:
                    producer.produce(topic, value, key, partition)
                return
            except BufferError:
                producer.poll(0.1)

    states = [PersonState(received=frozenset(received)).to_json() for received in fan_outs]
    for i, person in enumerate(event_persons):
        send(topics.router_persons, person.encode(), states[i % len(states)])
    for i in range(persons - len(event_persons)):
        send(topics.router_persons, rng.randbytes(16).hex().encode(), states[i % len(states)])
    for segment in range(records // SEGMENT_ENTRIES):
        entries = {str(uuid.UUID(bytes=rng.randbytes(16), version=4)): fan_outs[(segment + i) % len(fan_outs)]
                   for i in range(SEGMENT_ENTRIES)}  # fmt: skip
        send(topics.router_records, next(iter(entries)).encode(), stored_json(entries), segment % PARTITIONS)
    producer.flush()


def events_of(numbers: list[str], n: int) -> list[tuple[bytes, bytes]]:
    codec = Codec(CatalogRegistry(catalog()))
    schema_id = codec.current_id("Death")
    codes = sorted(kommuner())
    rng = random.Random(17)
    messages = []
    for i in range(n):
        number = numbers[rng.randrange(len(numbers))]
        record = example("Death")
        record["envelope"].update(id=str(uuid.uuid4()), person=number, kommunenummer=[codes[i % len(codes)]])
        messages.append((pseudonym(number, KEY.encode()).encode(), codec.encode(record, schema_id)))
    return messages


def disk_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


async def router_at_scale(
    bootstrap: str, numbers: list[str], messages, persons: int, records: int, data_dir: Path
) -> dict[str, float]:
    app_id = f"bench-state-{persons}-{uuid.uuid4().hex[:6]}"
    topics = topic_names(app_id)
    await create_topics(
        bootstrap, [topics.events, topics.deliveries, topics.deadletter], compacted=[topics.subscriptions]
    )
    await create_topics_compacted(bootstrap, [topics.router_persons], [topics.router_records])
    subs = subscriptions(18_000)
    await produce(bootstrap, topics.subscriptions, [(s.id.encode(), s.to_json()) for s in subs])
    started = time.monotonic()
    await asyncio.to_thread(
        fill_changelogs, bootstrap, app_id, [pseudonym(x, KEY.encode()) for x in numbers], persons, records
    )
    filled = time.monotonic() - started
    await produce(bootstrap, topics.events, messages)
    proc = start_worker(app_id, stage("route"), bootstrap, data_dir)
    started = time.monotonic()
    try:
        await first_output(bootstrap, topics.deliveries, proc)
        recovery = time.monotonic() - started
        span = await output_span(bootstrap, topics.deliveries, 2 * len(messages), 1800, proc)
        rss = peak_rss_mib(proc)
        on_disk = disk_mib(data_dir / app_id / "state")
        # A clean stop (SIGTERM) keeps the state files with a checkpoint; the worker started again on
        # the same data directory reads the changelogs only from there (docs/state.md).
        stop(proc)
        before = await output_count(bootstrap, topics.deliveries)
        await produce(bootstrap, topics.events, events_of(numbers, 1000))
        proc = start_worker(app_id, stage("route"), bootstrap, data_dir)
        started = time.monotonic()
        await first_output(bootstrap, topics.deliveries, proc, after=before)
        restart = time.monotonic() - started
    finally:
        stop(proc)
        await delete_topics(bootstrap, app_id)
        shutil.rmtree(data_dir / app_id, ignore_errors=True)
    return {
        "rate": len(messages) / span, "rss": rss, "recovery": recovery, "restart": restart, "disk": on_disk,
        "fill": filled,
    }  # fmt: skip


async def create_topics_compacted(bootstrap: str, compacted: list[str], compact_delete: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"}) for n in compacted]
            + [NewTopic(n, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact,delete",
                                                         "retention.ms": str(400 * 86_400_000)})
               for n in compact_delete]
        )  # fmt: skip
    finally:
        await admin.close()


async def output_count(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])).values())
    finally:
        await consumer.stop()


async def first_output(bootstrap: str, topic: str, proc: subprocess.Popen, after: int = 0) -> None:
    """Wait until the worker writes its first delivery (past `after` in all): its state is recovered."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, metadata_max_age_ms=1000)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        async with asyncio.timeout(3600):
            while sum((await consumer.end_offsets(tps)).values()) <= after:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited with {proc.returncode}")
                await asyncio.sleep(0.2)  # a poll of the end offsets, not a wait for a result
    finally:
        await consumer.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=5_500_000)
    parser.add_argument("--records", type=int, default=20_000_000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bootstrap = bootstrap_servers()
    data_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-state-{uuid.uuid4().hex[:6]}"
    data_dir.mkdir(parents=True)
    numbers = synthetic_numbers(min(args.events, 50_000))
    messages = events_of(numbers, args.events)
    small = (50_000, int(50_000 * args.records / args.persons))
    large = (args.persons, args.records)
    raw, at_small, at_large = (
        "raw aiokafka consume->produce",
        f"router, {small[0]:,} persons, {small[1]:,} records",
        f"router, {large[0]:,} persons, {large[1]:,} records",
    )
    results: dict[str, list[dict[str, float]]] = {raw: [], at_small: [], at_large: []}
    run = uuid.uuid4().hex[:6]
    raw_in = f"bench-rawstate-{run}-in"
    await create_topics(bootstrap, [raw_in])
    await produce(bootstrap, raw_in, messages)
    try:
        for repeat in range(args.repeat):
            await create_topics(bootstrap, [f"bench-rawstate-{run}-out{repeat}"])
            span = await raw_passthrough(bootstrap, raw_in, f"bench-rawstate-{run}-out{repeat}", len(messages))
            results[raw].append({"rate": len(messages) / span})
            for name, (persons, records) in ((at_small, small), (at_large, large)):
                results[name].append(await router_at_scale(bootstrap, numbers, messages, persons, records, data_dir))
                last = results[name][-1]
                print(f"run {repeat + 1}: {name}: {last['rate']:,.0f} events/s, peak RSS {last['rss']:,.0f} MiB, "
                      f"recovery {last['recovery']:.0f} s, after a clean restart {last['restart']:.1f} s, "
                      f"on disk {last['disk']:,.0f} MiB", flush=True)  # fmt: skip
    finally:
        await delete_topics(bootstrap, f"bench-rawstate-{run}")
        shutil.rmtree(data_dir, ignore_errors=True)

    def cell(name: str, key: str, fmt: str) -> str:
        values = [r[key] for r in results[name] if key in r]
        if not values:
            return ""
        spread = f" ({fmt.format(min(values))}-{fmt.format(max(values))})" if len(values) > 1 else ""
        return fmt.format(median(values)) + spread

    print(f"\n{args.events:,} Death events of persons the router knows, 18,000 subscriptions, {PARTITIONS} partitions, "
          f"{args.repeat} runs in turns; medians (ranges)")  # fmt: skip
    print("| contender | events/s | peak RSS MiB | start to first output, s | the same after a clean restart, s "
          "| state on disk MiB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for name in (raw, at_small, at_large):
        print(f"| {name} | {cell(name, 'rate', '{:,.0f}')} | {cell(name, 'rss', '{:,.0f}')} | "
              f"{cell(name, 'recovery', '{:.0f}')} | {cell(name, 'restart', '{:.1f}')} | "
              f"{cell(name, 'disk', '{:,.0f}')} |")  # fmt: skip
    ratio = [big["rate"] / few["rate"] for big, few in zip(results[at_large], results[at_small], strict=True)]
    print(f"\nnational / 50,000 persons, per run: {', '.join(f'{x:.2f}' for x in ratio)}; "
          f"median {median(ratio):.2f} (target >= 0.8)")  # fmt: skip
    print(f"peak RSS at national scale: {max(r['rss'] for r in results[at_large]):,.0f} MiB (target <= 1,024)")


if __name__ == "__main__":
    asyncio.run(main())
