"""Worker memory for a paused subscription's backlog: bounded (the default) vs unbounded (before).

    .venv/bin/python bench/bench_delivery_memory.py [--deliveries N] [--limit L] [--runs R]

Needs the local broker (`samband kafka up`, or KAFKA_BOOTSTRAP_SERVERS). Each run starts a
`samband worker` subprocess with one paused webhook subscription, waits until it is up, reads
its resident memory (VmRSS), sends N deliveries for N persons, waits until the delivery group
has committed all of them, and reads VmRSS again. It does so with
SAMBAND_DELIVERY_MEMORY_PER_SUBSCRIPTION=L (bounded) and with a limit above N (the backlog all in
memory, as before), in turns, R times each. Prints the growth per run and the median and range
per mode. Everything is synthetic: persons are pseudonym-shaped hex counters.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from bench_delivery import delivery, whole_subscription, worker_env

from agents.config import bootstrap_servers


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def committed(admin: AIOKafkaAdminClient, group: str) -> int:
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except Exception:  # the group's coordinator is not there yet: nothing committed
        return 0
    return sum(meta.offset for meta in offsets.values() if meta.offset > 0)


async def one_run(bootstrap: str, deliveries: int, limit: int) -> float:
    """RSS growth (MiB) of a worker holding a paused subscription's backlog of `deliveries`."""
    app_id = f"bench-memory-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics(
        [
            NewTopic(f"{app_id}-deliveries", 4, 1),
            NewTopic(f"{app_id}-subscriptions", 1, 1, topic_configs={"cleanup.policy": "compact"}),
        ]
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    workdir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    env = worker_env(bootstrap, app_id, workdir, SAMBAND_DELIVERY_MEMORY_PER_SUBSCRIPTION=str(limit))
    (workdir / "secrets").mkdir()
    (workdir / "secrets" / "paused").write_text("whsec_" + base64.b64encode(bytes(24)).decode())
    log = (workdir / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    group = f"{app_id}-delivery"
    try:
        sub = {"kind": "webhook", "url": "http://127.0.0.1:9/hook", "secret_ref": "file:paused", "paused": True}
        await producer.send_and_wait(f"{app_id}-subscriptions", whole_subscription("paused", sub), key=b"paused")
        # Up: one delivery read and committed (a paused one is stored at once).
        await producer.send_and_wait(f"{app_id}-deliveries", json.dumps(delivery("paused", 0, "warm-up")).encode(),
                                     key=f"paused/{0:032x}".encode())  # fmt: skip
        await wait_committed(admin, group, 1, worker)
        before = rss_mib(worker.pid)
        for n in range(1, deliveries + 1):
            record = delivery("paused", n, f"ev-{n}")
            await producer.send(f"{app_id}-deliveries", json.dumps(record).encode(), key=f"paused/{n:032x}".encode())
        await producer.flush()
        await wait_committed(admin, group, deliveries + 1, worker)
        return rss_mib(worker.pid) - before
    finally:
        worker.terminate()
        worker.wait(60)
        await producer.stop()
        await admin.delete_topics([t for t in await admin.list_topics() if t.startswith(app_id)])
        await admin.close()


async def wait_committed(admin: AIOKafkaAdminClient, group: str, total: int, worker: subprocess.Popen) -> None:
    async with asyncio.timeout(600):
        while await committed(admin, group) < total:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited ({worker.returncode})")
            await asyncio.sleep(0.5)  # poll interval inside the deadline


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=50_000)
    parser.add_argument("--limit", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    bootstrap = bootstrap_servers()
    modes = {f"bounded (limit {args.limit:,})": args.limit, "unbounded (as before)": 10 * args.deliveries}
    growth: dict[str, list[float]] = {mode: [] for mode in modes}
    for run in range(args.runs):
        for mode, limit in modes.items():
            mib = await one_run(bootstrap, args.deliveries, limit)
            growth[mode].append(mib)
            print(f"run {run + 1} {mode}: RSS +{mib:.1f} MiB for {args.deliveries:,} paused deliveries", flush=True)
    for mode, values in growth.items():
        per = [v * 1024 * 1024 / args.deliveries for v in values]
        print(f"{mode}: median +{statistics.median(values):.1f} MiB (range {min(values):.1f} to {max(values):.1f}); "
              f"{statistics.median(per):,.0f} bytes per delivery")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
