"""Acceptance: the feed source, killed with SIGKILL twice mid-stream, delivers every event exactly once after dedup
and leaves no encode worker process behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from connector_fixtures import synthetic_feed
from kafka_io import read_to_end

from bus.topics import topic_names
from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.registry import CatalogRegistry
from synthetic.folkeregister_simulator import DEFAULT_TOKEN, run_simulator

EVENTS = 100_000


async def end_offset(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


def children(pid: int) -> set[int]:
    """The source's child processes (its encode workers), from /proc (Linux)."""
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return {int(child) for child in listing.read().split()}


async def wait_until_gone(pids: set[int], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while alive := {p for p in pids if os.path.exists(f"/proc/{p}") and "Z" not in _state(p)}:
            await asyncio.sleep(0.1)  # poll interval inside a deadline
    assert not alive


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "Z"


async def wait_for_offset(
    bootstrap: str, topic: str, at_least: int, process: subprocess.Popen, log_path, timeout: float = 60
):
    async with asyncio.timeout(timeout):
        while await end_offset(bootstrap, topic) < at_least:
            if process.poll() is not None:
                raise AssertionError(f"source exited early ({process.returncode}):\n{log_path.read_text()[-3000:]}")
            await asyncio.sleep(0.1)  # poll interval inside a deadline


@pytest.mark.timeout(180)
async def test_feed_source_killed_twice_loses_and_reorders_nothing(kafka_bootstrap, connector_app_id, tmp_path):
    documents = synthetic_feed(EVENTS)
    topic = topic_names(connector_app_id).ingest
    log_path = tmp_path / "source.log"
    env = {**os.environ, "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SAMBAND_APP_ID": connector_app_id,
           "SAMBAND_LOG_FORMAT": "json"}  # fmt: skip

    def start(config_path) -> subprocess.Popen:
        with log_path.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "agents.cli", "connectors", "run", "folkeregister", "--config", str(config_path)],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip

    async with run_simulator(documents) as simulator:
        config = {"base_url": simulator.base_url, "token": DEFAULT_TOKEN}
        running = tmp_path / "running.json"
        running.write_text(json.dumps(config))
        finishing = tmp_path / "finishing.json"
        finishing.write_text(json.dumps({**config, "stop_at_end": True}))

        for kill_after in (EVENTS // 5, EVENTS // 2):
            process = start(running)
            await wait_for_offset(kafka_bootstrap, topic, kill_after, process, log_path)
            workers = children(process.pid)
            assert workers, "the source encodes in a worker process by default"
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            await wait_until_gone(workers)  # no orphaned encode worker outlives a killed source
        process = start(finishing)
        assert await asyncio.to_thread(process.wait, 120) == 0, log_path.read_text()[-3000:]

    codec = Codec(CatalogRegistry(catalog()))
    first_seen: dict[str, int] = {}
    records = await read_to_end(kafka_bootstrap, topic, timeout=60)
    for record in records:
        envelope = codec.decode(record.value)["envelope"]
        first_seen.setdefault(envelope["id"], envelope["sequenceNumber"])
    dead = {r.key.decode() for r in await read_to_end(kafka_bootstrap, topic_names(connector_app_id).deadletter)}
    expected = {d.hendelsesdokument for d in documents} - dead
    assert set(first_seen) == expected  # every event, none invented
    sequence = list(first_seen.values())
    assert sequence == sorted(sequence)  # in sequence order after dedup
    # Restarts resumed from their bookmark: at most the unfinished page(s) were read twice.
    assert len(records) - len(first_seen) <= 2 * 2 * 1000
    assert log_path.read_text().count('"from_bookmark": true') == 2
