"""A `samband worker` subprocess with the delivery agent, fed straight through its topics.

Tests produce delivery records (docs/architecture.md) to `<app>-deliveries` and subscriptions
as JSON to `<app>-subscriptions`; receivers are real HTTP servers (webhook_receiver). A test
names only the subscription's delivery (and fields); `complete()` adds the rest of a valid
subscription, as the worker reads and validates it whole.
"""

from __future__ import annotations

import json
import os
from contextlib import asynccontextmanager
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from delivery_fixtures import delivery, delivery_key
from worker_process import WorkerProcess

from connectors.webhook.secrets import new_secret


@asynccontextmanager
async def running_bus(bootstrap: str, tmp: Path, **settings: str):
    """A DeliveryBus with its own app id and a started worker (`settings`: more of its environment), stopped on exit."""
    from support import free_port, unique_name

    app_id = unique_name("delivery")
    env = {
        **os.environ,
        "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SAMBAND_APP_ID": app_id,
        "SAMBAND_SUBSCRIBER_TOPIC_PREFIX": f"subscriber.{app_id}.",  # the broker is shared: topics of this bus only
        "SAMBAND_DATA_DIR": str(tmp / "worker-data"),
        "SAMBAND_WEB_PORT": str(free_port()),
        "SAMBAND_LOG_FORMAT": "json",
        **settings,
    }
    bus = DeliveryBus(bootstrap, env, tmp / "worker.log")
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


class DeliveryBus:
    def __init__(self, bootstrap: str, env: dict[str, str], log_path: Path):
        self.bootstrap = bootstrap
        self.app_id = env["SAMBAND_APP_ID"]
        self.secret = new_secret()
        env = {"SAMBAND_SECRETS_DIR": str(log_path.parent / "secrets"), **env}  # one secret file per subscription
        self.worker = WorkerProcess(env, log_path)
        self.secrets_dir = Path(env["SAMBAND_SECRETS_DIR"])
        self.secrets_dir.mkdir(parents=True, exist_ok=True)
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        self.topic = lambda name: f"{self.app_id}-{name}"
        self.subscriber_topic = lambda sub_id: env["SAMBAND_SUBSCRIBER_TOPIC_PREFIX"] + sub_id

    async def start(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(self.topic("deliveries"), num_partitions=4, replication_factor=1),
                    NewTopic(
                        self.topic("subscriptions"),
                        num_partitions=1,
                        replication_factor=1,
                        topic_configs={"cleanup.policy": "compact"},
                    ),
                ]
            )
        finally:
            await admin.close()
        await self.producer.start()
        self.worker.start()

    async def stop(self) -> None:
        await self.producer.stop()
        self.worker.stop()

    async def subscribe(self, sub_id: str, url: str, **delivery_settings) -> None:
        settings = {"kind": "webhook", "url": url, "secret_ref": f"file:{sub_id}", **delivery_settings}
        await self.put_subscription({"id": sub_id, "delivery": settings})

    async def put_subscription(self, value: dict) -> None:
        """Write a subscription to the bus's topic, its signing secret (the bus's test secret) in its own file first."""
        (self.secrets_dir / value["id"]).write_text(self.secret)
        await self.producer.send_and_wait(
            self.topic("subscriptions"), json.dumps(complete(value)).encode(), key=value["id"].encode()
        )

    async def subscribe_kafka(self, sub_id: str, fields: dict[str, list[str]], **delivery_settings) -> None:
        value = {"id": sub_id, "fields": fields, "delivery": {"kind": "kafka", **delivery_settings}}
        await self.producer.send_and_wait(
            self.topic("subscriptions"), json.dumps(complete(value)).encode(), key=sub_id.encode()
        )

    @property
    def registry_url(self) -> str:
        """The worker's schema registry endpoint (Confluent REST API)."""
        return f"http://127.0.0.1:{self.worker.env['SAMBAND_WEB_PORT']}"

    async def send(self, records: list[dict], headers: list[tuple[str, bytes]] | None = None) -> None:
        futures = [
            await self.producer.send(
                self.topic("deliveries"), json.dumps(r).encode(), key=delivery_key(r), headers=headers
            )
            for r in records
        ]
        for future in futures:
            await future

    async def wait_for(self, receiver, predicate, timeout: float, what: str) -> None:
        """receiver.wait_for, failing at once with the worker's log if the worker has died."""
        import asyncio

        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self.worker.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.worker.process.returncode}):\n{self.worker.log_tail()}")
            left = deadline - asyncio.get_running_loop().time()
            try:
                return await receiver.wait_for(predicate, min(1.0, max(left, 0.01)), what)
            except AssertionError:
                if left <= 1.0:
                    raise

    @staticmethod
    def events_for(sub_id: str, persons: int, per_person: int, prefix: str = "ev") -> list[dict]:
        """Interleaved events: person 0's first, person 1's first, ..., then everyone's second."""
        return [
            delivery(sub_id, f"{p:032x}", f"{prefix}-{p}-{n}", n) for n in range(per_person) for p in range(persons)
        ]


def assert_in_order_per_person(received, persons: int, per_person: int, first_arrivals: bool = False) -> None:
    """Each person's events arrived complete and in event order.

    With `first_arrivals`, re-deliveries (a webhook-id seen before) are left out: after a crash,
    the not yet acknowledged tail of a person's queue is sent again, in order, with the same ids.
    """
    by_person: dict[str, list[int]] = {}
    seen: set[str] = set()
    for r in received:
        if first_arrivals and r.webhook_id in seen:
            continue
        seen.add(r.webhook_id)
        by_person.setdefault(r.event["subject"], []).append(r.event.get_data()["seq"])
    assert len(by_person) == persons, f"events of {len(by_person)} persons arrived, expected {persons}"
    for person, seqs in by_person.items():
        assert seqs == list(range(per_person)), f"person {person[:8]}: arrived in order {seqs}"


def complete(value: dict) -> dict:
    """`value` (at least an id and a delivery) as a whole subscription: a municipal system, not a
    public body, in one kommune, with the fields given (or a death date) and their event types."""
    fields = value.get("fields") or {"Death": ["deathDate"]}
    return {
        "system": {"name": f"System {value['id']}", "owner": "Prøve kommune", "contact": "it@prove.example"},
        "legal_basis": "Prøvegrunnlag for testene",
        "public_body": False,
        "kommuner": ["0301"],
        "event_types": sorted(fields),
        "fields": fields,
        **value,
    }
