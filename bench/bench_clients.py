"""What reading costs per record in the two Kafka clients (issue 20): aiokafka's `getmany()`, the
stages' reader, against confluent-kafka's (librdkafka's) `consume()` in a thread, with and without
turning each message into the `ConsumerRecord` the stages take.

    .venv/bin/python bench/bench_clients.py [--records 200000] [--repeat 3]

Uses the broker at KAFKA_BOOTSTRAP_SERVERS / SAMBAND_KAFKA_BOOTSTRAP_SERVERS, else the local one.
Writes N records of 300 bytes (5,000 keys, 4 partitions), then reads them all in each client, in
turns. Prints records/s from the first batch to the last, and CPU per record (the process's user
and system time, librdkafka's own threads included).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import median

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from confluent_kafka import Consumer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_routing import create_topics, delete_topics, produce_batched  # noqa: E402

from agents.config import bootstrap_servers  # noqa: E402


async def read_aiokafka(bootstrap: str, topic: str, n: int) -> tuple[float, float]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=uuid.uuid4().hex,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
    )
    await consumer.start()
    done, started, cpu = 0, 0.0, 0.0
    try:
        while done < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            if batch and not done:
                started, cpu = time.perf_counter(), time.process_time()
            done += sum(map(len, batch.values()))
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        await consumer.stop()


async def read_librdkafka(bootstrap: str, topic: str, n: int, as_records: bool) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    polling = ThreadPoolExecutor(1)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    done, started, cpu = 0, 0.0, 0.0
    try:
        while done < n:
            messages = await loop.run_in_executor(polling, consumer.consume, 2000, 0.5)
            if messages and not done:
                started, cpu = time.perf_counter(), time.process_time()
            if as_records:
                [
                    ConsumerRecord(m.topic(), m.partition(), m.offset(), m.timestamp()[1], 0, m.key(), m.value(),
                                   None, 0, 0, m.headers() or ())
                    for m in messages
                ]  # fmt: skip
            done += len(messages)
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        await loop.run_in_executor(polling, consumer.close)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bootstrap, n = bootstrap_servers(), args.records
    topic = f"bench-clients-{uuid.uuid4().hex[:6]}"
    await create_topics(bootstrap, [topic])
    await produce_batched(bootstrap, topic, [(f"k{i % 5000}".encode(), os.urandom(300)) for i in range(n)])
    contenders = {
        "aiokafka getmany()": lambda: read_aiokafka(bootstrap, topic, n),
        "confluent-kafka consume()": lambda: read_librdkafka(bootstrap, topic, n, False),
        "confluent-kafka consume(), as ConsumerRecords": lambda: read_librdkafka(bootstrap, topic, n, True),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    try:
        for _ in range(args.repeat):
            for name, read in contenders.items():
                results[name].append(await read())
    finally:
        await delete_topics(bootstrap, topic)
    print(f"\n{n:,} records of 300 bytes, {args.repeat} runs in turns; medians (ranges)")
    print(f"{'client':<48} {'records/s':>22} {'CPU us per record':>22}")
    for name, runs in results.items():
        rates = [n / span for span, _ in runs]
        cpus = [cpu / n * 1e6 for _, cpu in runs]
        print(
            f"{name:<48} {median(rates):>10,.0f} ({min(rates):,.0f}-{max(rates):,.0f}) "
            f"{median(cpus):>8.2f} ({min(cpus):.2f}-{max(cpus):.2f})"
        )


if __name__ == "__main__":
    asyncio.run(main())
