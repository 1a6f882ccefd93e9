"""Scale-out on a real three-node cluster (issue 16, item 4): every bus topic with 12 partitions,
three replicas and two in sync, while events flow from the ingest topic to a webhook subscriber.

1. Three workers in one group; one is killed with kill -9 in mid-stream. The other two take its
   partitions once its session times out, and go on from its last commits.
2. Two workers; the broker that leads most of the bus's partitions is killed with kill -9 in
   mid-stream and started again; then all three brokers are restarted one by one (a rolling
   restart: each stopped gracefully, started, and the cluster back in sync before the next).

Each counts what its subscriber got (fault_counts.py): lost, wrong and out of order must be 0;
duplicates only of an event that had arrived (the same webhook-id, the idempotency key).
They run in `make faults` (SAMBAND_FAULT_CLUSTER_EVENTS, default 50,000 there), not in `make
test`: three brokers and three workers beside the rest of the suite left two cores so short that a
consumer group rebalanced for minutes (docs/reliability.md, "Not yet").
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from bus_settings import PSEUDONYM_KEY
from fault_counts import count
from routing_events import address, cloudevent_json, event, synthetic_number
from support import free_port, free_port_run, unique_name
from webhook_receiver import Receiver
from worker_process import WorkerProcess

from agents.manifests import RETENTION_MS
from bus.topics import TABLE, ensure_table_topics
from connectors.webhook.secrets import new_secret
from schemas.pseudonym import pseudonym
from tests.faults.test_two_workers import _assigned
from tests.operations.ops_bus import full_subscription

EVENTS = int(os.environ.get("SAMBAND_FAULT_CLUSTER_EVENTS", "0"))
PER_PERSON = 6
PERSONS = EVENTS // PER_PERSON
TOTAL = PERSONS * PER_PERSON  # the events fed: whole persons' moves
PARTITIONS = 12
SESSION_S = 10
SUB = "cluster"
pytestmark = [
    pytest.mark.timeout(3600),  # a 50,000-event run takes many minutes
    pytest.mark.skipif(EVENTS == 0, reason="a heavy fault run: `make faults` (SAMBAND_FAULT_CLUSTER_EVENTS)"),
]


class Cluster:
    """A three-node cluster of the project's launcher, driven through `samband kafka`."""

    def __init__(self, state_dir):
        self.env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
        self.env |= {"SAMBAND_KAFKA_PORT": str(free_port_run(6)), "SAMBAND_KAFKA_STATE_DIR": str(state_dir)}
        self.bootstrap = ""

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "agents.cli", "kafka", *args], env=self.env, capture_output=True, text=True,
            timeout=240,
        )  # fmt: skip
        assert done.returncode == 0, f"samband kafka {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def up(self) -> None:
        out = self.cli("up", "--brokers", "3")
        self.bootstrap = out.split("bootstrap ", 1)[1].split()[0]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster") / "kafka")
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.cli("down")


class Bus:
    """Workers of one app id on the cluster, a webhook subscriber of every Move, and a feed."""

    def __init__(self, cluster: Cluster, tmp):
        self.cluster, self.tmp = cluster, tmp
        self.app = unique_name("scale")
        self.secret = new_secret()
        (tmp / "secrets").mkdir()
        (tmp / "secrets" / SUB).write_text(self.secret)
        self.receiver = Receiver(self.secret)
        self.workers: list[WorkerProcess] = []
        self.persons = {p: synthetic_number(1 + p % 28, 1 + p % 12, 60 + p % 30, 100 + p // 300) for p in
                        range(PERSONS)}  # fmt: skip
        self.produced = 0

    def env(self, n: int) -> dict[str, str]:
        return {
            **os.environ,
            "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": self.cluster.bootstrap,
            "SAMBAND_APP_ID": self.app,
            "SAMBAND_PARTITIONS": str(PARTITIONS),
            "SAMBAND_PSEUDONYM_KEY": PSEUDONYM_KEY,
            "SAMBAND_BROKER_SESSION_TIMEOUT": str(SESSION_S),
            "SAMBAND_SECRETS_DIR": str(self.tmp / "secrets"),
            "SAMBAND_DATA_DIR": str(self.tmp / f"worker-{n}-data"),
            "SAMBAND_WEB_PORT": str(free_port()),
            "SAMBAND_LOG_FORMAT": "json",
        }

    async def start(self, workers: int, monkeypatch) -> None:
        monkeypatch.setenv("SAMBAND_PARTITIONS", str(PARTITIONS))
        await self.until_brokers(3)
        # Made beforehand, as a cluster's administrator would, with the generated manifests' retentions.
        await ensure_table_topics(self.cluster.bootstrap, self.app, list(TABLE), RETENTION_MS)
        await self.receiver.start()
        subscription = full_subscription(SUB, self.receiver.url, "all", ["Move"], {"Move": ["movedDate"]})
        await self._send([(f"{self.app}-subscriptions", SUB.encode(), json.dumps(subscription).encode())])
        for n in range(workers):
            worker = WorkerProcess(self.env(n), self.tmp / f"worker-{n}.log")
            worker.start()
            self.workers.append(worker)
        await self.until(lambda: all(self._holds(w) for w in self.workers), 120, "every worker holding partitions")
        await self.until(self.receiver.verified, 60, "the subscriber verified")

    def _holds(self, worker: WorkerProcess) -> set[int]:
        return _assigned(worker).get(f"{self.app}-delivery", set())

    async def _send(self, records: list[tuple[str, bytes, bytes]]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.cluster.bootstrap, acks="all", enable_idempotence=True,
                                    linger_ms=5, request_timeout_ms=60_000)  # fmt: skip
        await producer.start()
        try:
            sends = [await producer.send(topic, value, key=key) for topic, key, value in records]
            await asyncio.gather(*sends)
        finally:
            await producer.stop()

    async def feed(self, rate: float) -> None:
        """Every person's moves, in turns (each person's in order), into ingest at about `rate` a second."""
        records = []
        for n in range(PER_PERSON):
            for p, person in self.persons.items():
                move = event("Move", person, ["0301"], envelope={"id": f"c-{p}-{n}"},
                             previousAddress=address("0301", "Gamlevegen", n + 1),
                             newAddress=address("0301", "Nyvegen", n + 2), scope="withinKommune")  # fmt: skip
                key = pseudonym(person, PSEUDONYM_KEY.encode()).encode()
                records.append((f"{self.app}-ingest", key, cloudevent_json(move)))
        chunk = max(1, int(rate / 10))
        started = time.monotonic()
        for i in range(0, len(records), chunk):
            await self._send(records[i : i + chunk])
            self.produced = i + chunk
            ahead = started + self.produced / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)  # pacing the source, not waiting for an outcome
        self.produced = len(records)

    async def until_brokers(self, count: int) -> None:
        """Every broker registered and unfenced (just after a start one may not be yet)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.cluster.bootstrap)
        await admin.start()
        try:
            deadline = asyncio.get_running_loop().time() + 60
            while len((await admin.describe_cluster())["brokers"]) < count:
                assert asyncio.get_running_loop().time() < deadline, f"fewer than {count} brokers up after 60 s"
                await asyncio.sleep(0.5)  # poll interval inside the deadline
        finally:
            await admin.close()

    async def until(self, condition, timeout: float, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            alive = [w for w in self.workers if w.process.poll() is None]
            assert alive, f"every worker exited while waiting for {what}"
            assert asyncio.get_running_loop().time() < deadline, (
                f"not {what} within {timeout:.0f} s; delivered {len(self.receiver.unique_ids)} of {TOTAL}"
            )
            await asyncio.sleep(0.2)  # poll interval inside the deadline

    def counts(self, scenario: str):
        sent = {f"c-{p}-{n}.{SUB}" for p in self.persons for n in range(PER_PERSON)}
        return count(scenario, {SUB: sent}, {SUB: self.receiver.events()},
                     lambda a: (a.event["id"].split("-")[1], int(a.event["id"].split("-")[2]))).report()  # fmt: skip

    async def stop(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.stop()
        await self.receiver.stop()


async def test_three_workers_on_three_brokers_lose_nothing_when_one_worker_is_killed(cluster, tmp_path, monkeypatch):
    bus = Bus(cluster, tmp_path)
    try:
        await bus.start(3, monkeypatch)
        held = [bus._holds(w) for w in bus.workers]
        assert set().union(*held) == set(range(PARTITIONS)) and sum(map(len, held)) == PARTITIONS, held
        feeding = asyncio.create_task(bus.feed(rate=max(300.0, EVENTS / 40)))
        await bus.until(lambda: bus.produced >= EVENTS // 3, 120, "a third of the events fed")
        victim, survivors = bus.workers[1], [bus.workers[0], bus.workers[2]]
        victim.stop(signal.SIGKILL)
        killed = time.monotonic()
        await bus.until(
            lambda: set().union(*(bus._holds(w) for w in survivors)) == set(range(PARTITIONS)),
            SESSION_S + 90,
            "the survivors holding every partition",
        )
        taken_over = time.monotonic() - killed
        await feeding
        await bus.until(lambda: len(bus.receiver.unique_ids) >= TOTAL, 600, "every event delivered")
    finally:
        await bus.stop()
    print(f"\nthe survivors held the killed worker's partitions {taken_over:.1f} s after the kill "
          f"(session timeout {SESSION_S} s)")  # fmt: skip
    counts = bus.counts(f"three workers, one killed (kill -9), 3 brokers, {PARTITIONS} partitions")
    assert (counts.lost, counts.wrong, counts.out_of_order) == (0, 0, 0), counts


async def _leaders(bootstrap: str, topics: list[str]) -> Counter:
    """How many of these topics' partitions each broker leads."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return Counter(p["leader"] for t in await admin.describe_topics(topics) for p in t["partitions"])
    finally:
        await admin.close()


async def _in_sync(bootstrap: str, topics: list[str]) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        parts = [p for t in await admin.describe_topics(topics) for p in t["partitions"]]
        return bool(parts) and all(len(p["isr"]) == len(p["replicas"]) == 3 for p in parts)
    finally:
        await admin.close()


async def test_the_leader_broker_killed_then_a_rolling_restart_lose_nothing(cluster, tmp_path, monkeypatch):
    bus = Bus(cluster, tmp_path)
    topics = [t.name(bus.app) for t in TABLE]
    try:
        await bus.start(2, monkeypatch)
        feeding = asyncio.create_task(bus.feed(rate=max(30.0, EVENTS / 90)))
        await bus.until(lambda: bus.produced >= EVENTS // 6, 120, "a sixth of the events fed")
        [(leader, led)] = (await _leaders(cluster.bootstrap, topics)).most_common(1)
        cluster.cli("kill", "--node", str(leader))
        print(f"\nkilled node {leader}, leader of {led} of the bus's partitions")
        await bus.until(lambda: bus.produced >= EVENTS // 3, 300, "a third of the events fed")
        cluster.cli("start", "--node", str(leader))
        for node in (1, 2, 3):  # the rolling restart, while events flow
            deadline = asyncio.get_running_loop().time() + 180
            while not await _in_sync(cluster.bootstrap, topics):
                assert asyncio.get_running_loop().time() < deadline, "the cluster did not get back in sync"
                await asyncio.sleep(1)  # poll interval inside the deadline
            cluster.cli("stop", "--node", str(node))
            cluster.cli("start", "--node", str(node))
        produced_during_restarts = bus.produced
        await feeding
        await bus.until(lambda: len(bus.receiver.unique_ids) >= TOTAL, 900, "every event delivered")
    finally:
        await bus.stop()
    print(f"fed {produced_during_restarts} of {TOTAL} events before the rolling restart ended")
    counts = bus.counts("leader broker killed, then a rolling restart of 3 brokers; 2 workers")
    assert (counts.lost, counts.wrong, counts.out_of_order) == (0, 0, 0), counts
