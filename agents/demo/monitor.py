"""What the bus is doing, read from its own topics (docs/architecture.md) while the demo runs.

One consumer without a group follows, from the beginning:
`<app>-ingest` (events in), `<app>-events` (validated), `<app>-deliveries` (routed, per
system), `<app>-delivery-outcomes` (failed attempts = retries), `<app>-delivery-ledger`
(delivered / dead-lettered per system) and `<app>-deadletter` (per stage). Only counts,
event ids and subscription ids are kept.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from bus import clients
from bus.topics import topic_names

STAGE_HEADER = "samband-dlq-stage"


@dataclass
class SystemFlow:
    routed: set[str] = field(default_factory=set)  # event ids the router sent the system (purges included)
    failed_attempts: int = 0  # outcomes other than delivered: each one is retried or dead-lettered
    ledger_delivered: set[str] = field(default_factory=set)
    dead_lettered: set[str] = field(default_factory=set)


@dataclass
class BusFlow:
    ingested: int = 0
    validated: int = 0
    dead_letters: Counter = field(default_factory=Counter)  # stage -> count
    systems: defaultdict[str, SystemFlow] = field(default_factory=lambda: defaultdict(SystemFlow))


def bus_topic_names(app_id: str) -> dict[str, str]:
    names = topic_names(app_id)
    return {
        "ingest": names.ingest,
        "events": names.events,
        "deliveries": names.deliveries,
        "delivery-outcomes": names.outcomes,
        "delivery-ledger": names.ledger,
        "deadletter": names.deadletter,
    }


async def wait_for_topics(bootstrap: str, names: list[str], timeout: float, still_running) -> None:
    """Until every topic exists (the worker declares them); fails early if `still_running()` turns False."""
    admin = clients.admin(bootstrap)
    await admin.start()
    try:
        async with asyncio.timeout(timeout):
            while missing := set(names) - set(await admin.list_topics()):
                if not still_running():
                    raise RuntimeError(f"a demo process exited while waiting for topics {sorted(missing)}")
                await asyncio.sleep(0.5)  # poll interval of the existence check
    finally:
        await admin.close()


class BusMonitor:
    def __init__(self, bootstrap: str, app_id: str):
        self.flow = BusFlow()
        self.topics = bus_topic_names(app_id)
        self._kind_of = {name: kind for kind, name in self.topics.items()}
        self._consumer = clients.consumer(
            bootstrap,
            *self.topics.values(),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=200,
            metadata_max_age_ms=2000,
        )
        self._task: asyncio.Task | None = None
        self.last_record_at = time.monotonic()

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _follow(self) -> None:
        while True:
            for tp, records in (await self._consumer.getmany(timeout_ms=500, max_records=5000)).items():
                kind = self._kind_of[tp.topic]
                for record in records:
                    self._count(kind, record)
                if records:
                    self.last_record_at = time.monotonic()

    def _count(self, kind: str, record) -> None:
        flow = self.flow
        if kind == "ingest":
            flow.ingested += 1
        elif kind == "events":
            flow.validated += 1
        elif kind == "deadletter":
            stage = dict(record.headers or []).get(STAGE_HEADER, b"?").decode()
            flow.dead_letters[stage] += 1
        elif kind == "deliveries":
            delivery = json.loads(record.value)
            flow.systems[delivery["subscription"]].routed.add(delivery["event"]["id"])
        elif kind == "delivery-outcomes":
            if json.loads(record.value)["status"] != "delivered":
                flow.systems[record.key.decode().rsplit("/", 1)[0]].failed_attempts += 1
        elif kind == "delivery-ledger" and record.value is not None:
            entry = json.loads(record.value)
            system = flow.systems[entry["subscription"]]
            if entry["status"] == "delivered":
                system.ledger_delivered.add(entry["event_id"])
                system.dead_lettered.discard(entry["event_id"])
            elif entry["status"] == "dead_lettered":
                system.dead_lettered.add(entry["event_id"])


async def read_to_end(monitor: BusMonitor, timeout: float) -> None:
    """Wait until the monitor has read every record written so far (call after the writers stopped)."""
    consumer = monitor._consumer
    async with asyncio.timeout(timeout):
        while not consumer.assignment():
            await asyncio.sleep(0.1)  # poll interval: the first assignment after subscribing
        partitions = list(consumer.assignment())
        end = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            await asyncio.sleep(0.1)  # poll interval: the follow task is reading
