"""Whole-pipeline throughput with 1, 2 and 3 workers on a three-node cluster (issue 16, item 4).

    .venv/bin/python bench/bench_workers.py [--events 20000] [--repeat 3] [--workers 1,2,3]

Two figures per run: to the subscribers (the whole pipeline), and through ingest and routing
alone (the deliveries topic's first to last record): Kafka delivery writes each delivery and
waits for its acknowledgement, so on a replicated cluster it is the slowest stage.

Starts its own three-node KRaft cluster from the project's launcher (ports from 39100, state in a
temporary folder), so the topics have three replicas, two in sync, and 12 partitions. Each run:
a fresh app id; N canonical Death events (Avro, keyed by pseudonym) already in `<app>-ingest`;
two national Kafka subscriptions (every event matches both); then W `samband worker`s (every
stage) started at once. Throughput = N / (last - first subscriber record's timestamp), so start-up
and group joins are not counted. CPU per event = the workers' user + system CPU at the end,
over N. The baseline in the same invocation: raw aiokafka consume -> produce (batched) of the same
N records on the same cluster. Runs take turns (1, 2, 3 workers, baseline; again), and the table
gives medians and ranges.

On two cores, more workers share the same two cores: the gain is small, and the CPU per event is
what estimates per-core scaling (docs/deploy.md, "Sizing").
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from statistics import median

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_routing import KEY, canonical_events, free_port, produce, stop, subscriptions  # noqa: E402

from bus.topics import TABLE, ensure_table_topics, ensure_topics  # noqa: E402
from deploy import launcher  # noqa: E402

PARTITIONS = 12
os.environ["SAMBAND_PARTITIONS"] = str(PARTITIONS)


def start_cluster(state: Path) -> launcher.Cluster:
    base = dataclasses.replace(launcher.BrokerConfig.from_env(), port=39100, state_dir=state)
    cluster = launcher.Cluster(base, 3)
    launcher.up_cluster(cluster)
    return cluster


def worker(app_id: str, bootstrap: str, data: Path, n: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "SAMBAND_APP_ID": app_id,
        "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SAMBAND_DATA_DIR": str(data / f"{app_id}-{n}"),
        "SAMBAND_WEB_PORT": str(free_port()),
        "SAMBAND_WORKER_PROCESSES": "1",  # each worker one process: W workers are W processes
        "SAMBAND_LOG_LEVEL": "warning",
        "SAMBAND_LOG_FORMAT": "json",
        "SAMBAND_PSEUDONYM_KEY": KEY,
        "SAMBAND_DLQ_KEY": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    }
    log = data / f"{app_id}-{n}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", "worker", "--loglevel", "warning"],
        env=env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    proc.log = log  # type: ignore[attr-defined]
    return proc


def cpu_seconds(proc: subprocess.Popen) -> float:
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def span(bootstrap: str, topics: list[str], expected: int, procs: list[subprocess.Popen]) -> tuple[float, float]:
    """Wait until `topics` hold `expected` records. Returns the seconds from the first record's
    timestamp to the last, and the CPU seconds the workers spent from the first output seen to
    the last (start-up, imports and group joins left out)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=10_000)
    await consumer.start()
    tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
    try:
        async with asyncio.timeout(900):
            cpu_at_first = None
            while (written := sum((await consumer.end_offsets(tps)).values())) < expected:
                if exited := [p for p in procs if p.poll() is not None]:
                    tail = exited[0].log.read_text(errors="replace")[-2000:]  # type: ignore[attr-defined]
                    raise RuntimeError(f"a worker exited:\n{tail}")
                if written and cpu_at_first is None:
                    cpu_at_first = sum(cpu_seconds(p) for p in procs)
                await asyncio.sleep(0.1)  # polling end offsets only: reading would take the workers' CPU
            cpu = sum(cpu_seconds(p) for p in procs) - (cpu_at_first or 0.0)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            stamps: list[int] = []
            while len(stamps) < expected:
                for records in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                    stamps += [r.timestamp for r in records]
    finally:
        await consumer.stop()
    return max(max(stamps) - min(stamps), 1) / 1000, cpu


async def pipeline(bootstrap: str, workers: int, messages, data: Path) -> tuple[float, float, float]:
    """(events/s to the subscribers, events/s through ingest and routing, worker CPU µs per event)
    of W workers taking N events from ingest to two Kafka subscribers."""
    app = f"bw{workers}-{uuid.uuid4().hex[:6]}"
    await ensure_table_topics(bootstrap, app, list(TABLE))
    subs = subscriptions(2)
    out = [f"subscriber.{s.id}" for s in subs]
    await ensure_topics(bootstrap, {topic: {} for topic in out}, PARTITIONS)
    await produce(bootstrap, f"{app}-subscriptions", [(s.id.encode(), s.to_json()) for s in subs])
    await produce(bootstrap, f"{app}-ingest", messages)
    procs = [worker(app, bootstrap, data, n) for n in range(workers)]
    try:
        seconds, cpu = await span(bootstrap, out, 2 * len(messages), procs)
        routed, _ = await span(bootstrap, [f"{app}-deliveries"], 2 * len(messages), [])
    finally:
        for p in procs:
            stop(p)
        await delete(bootstrap, [*out, *(t.name(app) for t in TABLE)])
    return len(messages) / seconds, len(messages) / routed, cpu / len(messages) * 1e6


async def raw(bootstrap: str, messages) -> float:
    source, sink = f"raw-{uuid.uuid4().hex[:6]}", f"raw-{uuid.uuid4().hex[:6]}-out"
    await ensure_topics(bootstrap, {source: {}, sink: {}}, PARTITIONS)
    await produce(bootstrap, source, messages)
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=source, auto_offset_reset="earliest",
                                enable_auto_commit=False, max_poll_records=2000)  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=512 * 1024)
    await consumer.start()
    await producer.start()
    try:
        done = 0
        while done < len(messages):
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            futures = [await producer.send(sink, r.value, key=r.key) for rs in batch.values() for r in rs]
            await asyncio.gather(*futures)
            await consumer.commit()
            done += len(futures)
    finally:
        await producer.stop()
        await consumer.stop()
    seconds, _ = await span(bootstrap, [sink], len(messages), [])
    await delete(bootstrap, [source, sink])
    return len(messages) / seconds


async def delete(bootstrap: str, topics: list[str]) -> None:
    from bus import clients

    admin = clients.admin(bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()


async def measure(bootstrap: str, args, counts: list[int], messages, data: Path):
    rates: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for w in counts:
            rate, routed, micros = await pipeline(bootstrap, w, messages, data)
            rates.setdefault(f"{w} worker(s)", []).append(rate)
            rates.setdefault(f"{w} worker(s), ingest + route only", []).append(routed)
            cpu.setdefault(f"{w} worker(s)", []).append(micros)
        rates.setdefault("raw aiokafka consume->produce", []).append(await raw(bootstrap, messages))
    return rates, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", default="1,2,3")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    messages = canonical_events(args.events)
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as folder:
        data = Path(folder)
        cluster = start_cluster(data / "cluster")  # the launcher is synchronous: outside the event loop
        try:
            rates, cpu = asyncio.run(measure(cluster.bootstrap_servers, args, counts, messages, data))
        finally:
            launcher.down_cluster(cluster)

    def first(name: str) -> float:  # the same figure with the fewest workers; the raw loop against the whole
        suffix = ", ingest + route only" if name.endswith("route only") else ""
        return median(rates[f"{counts[0]} worker(s){suffix}"])

    print(f"\n{args.events:,} Death events, {PARTITIONS} partitions, 3 brokers (3 replicas, 2 in sync), "
          f"2 Kafka subscriptions; {args.repeat} runs in turns, {os.cpu_count()} cores")  # fmt: skip
    print(f"{'contender':<40} {'events/s':>9} {'range':>15} {'x first':>8} {'CPU us/event':>13}")
    for name, values in rates.items():
        spread = f"{min(values):,.0f}-{max(values):,.0f}"
        micro = f"{median(cpu[name]):>13.0f}" if name in cpu else ""
        print(f"{name:<40} {median(values):>9,.0f} {spread:>15} {median(values) / first(name):>8.2f} {micro}")
    print(json.dumps({"events_per_s": rates, "cpu_us_per_event": cpu}))


if __name__ == "__main__":
    main()
