"""Webhook delivery: the bus vs a raw aiohttp client, to the same local keep-alive receivers.

    .venv/bin/python bench/bench_delivery.py [--deliveries N] [--subscribers S] [--rate R] [--seconds T]

Needs the local broker (`samband kafka up`). Starts a `samband worker` subprocess with its
own app id, S webhook subscriptions to S local aiohttp receivers (in this process, answering
204 at once), then measures:
- throughput: N delivery records produced at once to `<app>-deliveries`, from the first
  produce to the last POST received, next to a raw aiohttp client (one keep-alive session
  per receiver, the same concurrency of 8 per receiver) posting the same bodies to the same
  receivers. Target: bus >= 0.7x raw. Also the worker's CPU time per delivery in that phase,
  a figure other load on the machine moves less than the rates.
- batched: the same N deliveries to S other subscriptions that ask for CloudEvents batch mode
  (`batch: {max_events: B}`, --batch-events), to their own receivers; single and batched take
  turns `--repeat` times. Target: batched >= 10x single, on the median.
- latency: records produced at R/s for T s; time from produce to POST received, p50/p99.
  Target: p99 <= 50 ms at 1,000/s.
Everything is synthetic: persons are pseudonym-shaped hex counters, no identity numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from statistics import median

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.config import bootstrap_servers
from connectors.webhook.secrets import new_secret

CONCURRENCY = 8


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): the worker's cost, whatever else runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def whole_subscription(sub_id: str, delivery: dict) -> bytes:
    """A valid subscription (the worker reads subscriptions whole) around the delivery the bench needs."""
    value = {
        "id": sub_id,
        "system": {"name": f"Bench {sub_id}", "owner": "Bench", "contact": "bench@example.invalid"},
        "legal_basis": "Synthetic benchmark",
        "public_body": False,
        "kommuner": ["0301"],
        "event_types": ["Death"],
        "fields": {"Death": ["deathDate"]},
        "delivery": delivery,
    }
    return json.dumps(value).encode()


def worker_env(bootstrap: str, app_id: str, workdir: Path, **settings: str) -> dict[str, str]:
    """The environment of a bench's `samband worker`: its own app id, folders and port; calls to
    receivers on loopback allowed; synthetic keys."""
    return {
        **os.environ,
        "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SAMBAND_APP_ID": app_id,
        "SAMBAND_PARTITIONS": "4",  # as the bench makes its deliveries topic
        "SAMBAND_DATA_DIR": str(workdir / "data"),
        "SAMBAND_WEB_PORT": str(free_port()),
        "SAMBAND_WORKER_PROCESSES": "1",  # one process measured, as in every figure before --processes
        "SAMBAND_LOG_LEVEL": "warning",
        "SAMBAND_LOG_FORMAT": "json",
        "SAMBAND_SECRETS_DIR": str(workdir / "secrets"),
        "SAMBAND_PSEUDONYM_KEY": "bench-pseudonym-key-of-at-least-32-bytes",
        "SAMBAND_DLQ_KEY": base64.b64encode(bytes(32)).decode(),
        "SAMBAND_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
        **settings,
    }


class CountingReceiver:
    def __init__(self):
        self.arrivals: dict[str, float] = {}  # webhook-id (or body id for raw) -> arrival time
        self.count = 0
        self.done = asyncio.Event()
        self.expect = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.count += 1
        key = request.headers.get("webhook-id") or request.headers.get("x-bench-id")
        if key and key.startswith("validation."):  # the handshake (in batch mode a batch of one): echo its challenge
            event = json.loads(body)
            return web.json_response(
                {"challenge": (event[0] if isinstance(event, list) else event)["data"]["challenge"]}
            )
        if request.content_type == "application/cloudevents-batch+json":
            for event in json.loads(body):  # each event of a batch by its own idempotency key
                self.arrivals.setdefault(event["idempotencykey"], time.time())
        elif key:
            self.arrivals.setdefault(key, time.time())
        if self.expect and len(self.arrivals) >= self.expect:
            self.done.set()
        return web.Response(status=204)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"

    def reset(self, expect: int) -> None:
        self.arrivals.clear()
        self.expect = expect
        self.done = asyncio.Event()


def delivery(sub: str, person: int, event_id: str) -> dict:
    person_hex = f"{person:032x}"
    return {
        "idempotency_key": f"{event_id}.{sub}",
        "subscription": sub,
        "person": person_hex,
        "event": {
            "specversion": "1.0",
            "id": event_id,
            "source": "urn:samband:bench",
            "type": "no.samband.events.Move",
            "time": "2024-03-01T12:00:00.000+00:00",
            "subject": person_hex,
            "datacontenttype": "application/json",
            "data": {"movedDate": "2024-03-01", "kommunenummer": "4601", "sent_at": 0.0},
        },
        "kind": "event",
    }


async def wait_all(receivers, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        await asyncio.gather(*(r.done.wait() for r in receivers))


async def raw_client(urls: list[str], bodies: list[list[tuple[str, bytes]]]) -> None:
    """One keep-alive session per receiver, CONCURRENCY requests in flight each."""

    async def one_receiver(url: str, items: list[tuple[str, bytes]]) -> None:
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as session:
            queue = iter(items)

            async def worker():
                for key, body in queue:
                    async with session.post(
                        url, data=body, headers={"x-bench-id": key, "Content-Type": "application/cloudevents+json"}
                    ) as reply:
                        await reply.read()

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    await asyncio.gather(*(one_receiver(url, items) for url, items in zip(urls, bodies, strict=False)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--subscribers", type=int, default=4)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch-events", type=int, default=100, help="max_events of the batched subscriptions")
    parser.add_argument("--repeat", type=int, default=3, help="turns of single and batched throughput")
    args = parser.parse_args()
    bootstrap = bootstrap_servers()
    app_id = f"bench-delivery-{uuid.uuid4().hex[:8]}"
    receivers = [CountingReceiver() for _ in range(args.subscribers)]
    urls = [await r.start() for r in receivers]
    subs = [f"bench-{i}" for i in range(args.subscribers)]
    batch_receivers = [CountingReceiver() for _ in range(args.subscribers)]
    batch_urls = [await r.start() for r in batch_receivers]
    batch_subs = [f"bench-batch-{i}" for i in range(args.subscribers)]
    secret = new_secret()

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics(
        [
            NewTopic(f"{app_id}-deliveries", 4, 1),
            NewTopic(f"{app_id}-subscriptions", 1, 1, topic_configs={"cleanup.policy": "compact"}),
        ]
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    workdir = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    env = worker_env(bootstrap, app_id, workdir)
    (workdir / "secrets").mkdir()
    log = (workdir / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", "worker", "--loglevel", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for sub, url in zip(subs, urls, strict=False):
            (workdir / "secrets" / sub).write_text(secret)
            target = {"kind": "webhook", "url": url, "secret_ref": f"file:{sub}", "max_concurrency": CONCURRENCY}
            await producer.send_and_wait(f"{app_id}-subscriptions", whole_subscription(sub, target), key=sub.encode())
        for sub, url in zip(batch_subs, batch_urls, strict=False):
            (workdir / "secrets" / sub).write_text(secret)
            target = {"kind": "webhook", "url": url, "secret_ref": f"file:{sub}", "max_concurrency": CONCURRENCY,
                      "batch": {"max_events": args.batch_events}}  # fmt: skip
            await producer.send_and_wait(f"{app_id}-subscriptions", whole_subscription(sub, target), key=sub.encode())

        async def produce(records: list[dict], stamp: bool) -> None:
            for record in records:
                if stamp:
                    record["event"]["data"]["sent_at"] = time.time()
                key = f"{record['subscription']}/{record['person']}".encode()
                await producer.send(f"{app_id}-deliveries", json.dumps(record).encode(), key=key)

        # Warm-up: the worker is up, verified every subscriber and owns its partitions.
        for r in receivers + batch_receivers:
            r.reset(1)
        await produce([delivery(sub, 0, "warm-up") for sub in subs + batch_subs], stamp=False)
        await wait_all(receivers + batch_receivers, 120)

        # Throughput, the bus, single and batched in turns. Each person has a few events, as in real traffic.
        per_sub = args.deliveries // args.subscribers

        async def bus_throughput(to: list[str], at: list[CountingReceiver], tag: str) -> tuple[float, float]:
            records = [delivery(sub, n % 500, f"{tag}-{n}") for n in range(per_sub) for sub in to]
            for r in at:
                r.reset(per_sub)
            start, cpu_start = time.perf_counter(), cpu_seconds(worker.pid)
            await produce(records, stamp=False)
            await producer.flush()
            await wait_all(at, 600)
            return len(records) / (time.perf_counter() - start), (cpu_seconds(worker.pid) - cpu_start) / len(records)

        single, batched = [], []
        for turn in range(args.repeat):
            single.append(await bus_throughput(subs, receivers, f"tp{turn}"))
            batched.append(await bus_throughput(batch_subs, batch_receivers, f"bt{turn}"))
        bus_rate, bus_cpu = median(r for r, _ in single), median(c for _, c in single)

        # Throughput, raw aiohttp: the same bodies (the CloudEvent) to the same receivers.
        bodies = [
            [(f"raw-{n}", json.dumps(delivery(sub, n % 500, f"tp-{n}")["event"]).encode()) for n in range(per_sub)]
            for sub in subs
        ]
        for r in receivers:
            r.reset(per_sub)
        start = time.perf_counter()
        await raw_client(urls, bodies)
        raw_rate = per_sub * len(subs) / (time.perf_counter() - start)

        # Latency at a steady rate.
        total = int(args.rate * args.seconds)
        lat_records = [delivery(subs[n % len(subs)], n % 2000, f"lat-{n}") for n in range(total)]
        for i, r in enumerate(receivers):
            r.reset(len([x for x in lat_records if x["subscription"] == subs[i]]))
        sent: dict[str, float] = {}
        start = time.perf_counter()
        batch = max(1, args.rate // 100)  # 10 ms ticks
        for i in range(0, total, batch):
            for record in lat_records[i : i + batch]:
                sent[record["idempotency_key"]] = time.time()
            await produce(lat_records[i : i + batch], stamp=False)
            await asyncio.sleep(max(0.0, start + (i + batch) / args.rate - time.perf_counter()))  # pacing
        await wait_all(receivers, 300)
        latencies = sorted(r.arrivals[k] - sent[k] for r in receivers for k in r.arrivals if k in sent)
    finally:
        worker.terminate()
        worker.wait(60)
        await producer.stop()
        await admin.delete_topics([t for t in await admin.list_topics() if t.startswith(app_id)])
        await admin.close()

    p = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000  # noqa: E731
    print(f"\nwebhook delivery, {args.subscribers} local keep-alive receivers, {CONCURRENCY} in flight per receiver")
    print(f"{'measure':<40} {'value':>12} {'target':>14}")
    print(f"{'bus deliveries/s':<40} {bus_rate:>12.0f}")
    print(f"{'raw aiohttp posts/s (same bodies)':<40} {raw_rate:>12.0f}")
    print(f"{'bus / raw':<40} {bus_rate / raw_rate:>12.2f} {'>= 0.70':>14}")
    print(f"{'bus worker CPU per delivery (us)':<40} {bus_cpu * 1e6:>12.0f}")
    print(f"{f'latency p50 at {args.rate}/s (ms)':<40} {p(0.5):>12.1f}")
    print(f"{f'latency p99 at {args.rate}/s (ms)':<40} {p(0.99):>12.1f} {'<= 50':>14}")

    def rates(runs):
        return f"{median(r for r, _ in runs):.0f} ({min(r for r, _ in runs):.0f}-{max(r for r, _ in runs):.0f})"

    ratios = [b / s for (s, _), (b, _) in zip(single, batched, strict=True)]
    print(f"\nsingle vs batched (max_events {args.batch_events}), median (range) of {args.repeat} turns")
    print(f"{'bus single deliveries/s':<40} {rates(single):>24}")
    print(f"{'bus batched deliveries/s':<40} {rates(batched):>24}")
    print(f"{'batched worker CPU per delivery (us)':<40} {median(c for _, c in batched) * 1e6:>24.0f}")
    print(f"{'batched / single, per turn':<40} {', '.join(f'{x:.1f}' for x in ratios):>24} {'>= 10':>8}")


if __name__ == "__main__":
    asyncio.run(main())
