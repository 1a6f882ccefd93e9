"""`samband demo`: start the broker and a worker, push example messages through, show what runs.

This is the foundation's demo: one example agent. The synthetic-Norway demo replaces it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

from deploy import launcher


async def _relay_example_messages(bootstrap: str, app_id: str, count: int, timeout: float) -> float:
    """Send `count` messages to the example agent and wait until all are relayed; returns seconds taken."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [NewTopic(f"{app_id}-example-{end}", num_partitions=4, replication_factor=1) for end in ("in", "out")]
        await admin.create_topics(topics)
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
    run = uuid.uuid4().hex[:8]
    consumer = AIOKafkaConsumer(f"{app_id}-example-out", bootstrap_servers=bootstrap, auto_offset_reset="latest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        await consumer.getmany(timeout_ms=100)  # join at the end before sending
        started = time.monotonic()
        for i in range(count):
            await producer.send(f"{app_id}-example-in", key=f"p{i % 10}".encode(), value=f"{run}:{i}".encode())
        await producer.flush()
        seen: set[bytes] = set()
        async with asyncio.timeout(timeout):
            while len(seen) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    seen.update(r.value for r in records if r.value.startswith(run.encode()))
        return time.monotonic() - started
    finally:
        await producer.stop()
        await consumer.stop()


def _demo(args: argparse.Namespace) -> int:
    config = launcher.BrokerConfig.from_env()
    started_broker = not launcher.status(config).running
    t0 = time.monotonic()
    broker = launcher.up(config)
    print(f"kafka   {broker.describe()} ({time.monotonic() - t0:.1f} s)")

    app_id = "samband-demo"
    env = {**os.environ, "SAMBAND_APP_ID": app_id, "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}
    worker = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    print(f"worker  pid {worker.pid}, app id {app_id}, agent agents.example.relay")
    try:
        seconds = asyncio.run(_relay_example_messages(broker.bootstrap_servers, app_id, args.messages, timeout=120))
        print(f"flow    {args.messages} messages {app_id}-example-in -> relay -> {app_id}-example-out in {seconds:.1f} s")
        if args.keep_running:
            print("running; Ctrl-C stops everything")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return 0
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        if started_broker:
            launcher.down(config)
        print("stopped everything the demo started")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the demo: broker, worker, example flow")
    parser.add_argument("--messages", type=int, default=1000, help="example messages to push through (default 1000)")
    parser.add_argument("--keep-running", action="store_true", help="keep everything running until Ctrl-C")
    parser.set_defaults(handler=_demo)
