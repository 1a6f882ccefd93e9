"""Kafka subscribers write only to their own topic, which the bus creates, and a malformed record on
one of the bus's internal topics is skipped and counted: the worker keeps delivering, and restarts."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import aiohttp
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from delivery_bus import running_bus
from delivery_fixtures import delivery
from prometheus_client.parser import text_string_to_metric_families
from support import free_port, unique_name
from webhook_receiver import Receiver

from bus.reading import read_topic

TOKEN = "kafkasub-test-token"
FIELDS = {"Move": ["envelope.person", "movedDate"]}
FAST = {"retry_schedule": [0.1, 0.2, 0.3], "read_timeout": 1.0, "connect_timeout": 0.5}


def _kafka_subscription(sub_id: str, **delivery) -> dict:
    return {
        "id": sub_id,
        "system": {"name": f"System {sub_id}", "owner": "Prøve kommune", "contact": "it@prove.example"},
        "legal_basis": "Testhjemmel § 1 (synthetic test subscription)",
        "public_body": True,
        "kommuner": ["4601"],
        "event_types": ["Move"],
        "fields": FIELDS,
        "delivery": {"kind": "kafka", **delivery},
    }


def _moves(sub_id: str, persons: int, prefix: str) -> list[dict]:
    records = []
    for p in range(persons):
        record = delivery(sub_id, f"{p:032x}", f"{prefix}-{p}", 0)
        record["event"]["data"] = {"envelope": {"person": f"{p:032x}"}, "movedDate": "2024-03-01"}
        records.append(record)
    return records


async def _until(condition, timeout: float, what: str, bus) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert bus.worker.process.poll() is None, f"worker exited:\n{bus.worker.log_tail()}"
        assert asyncio.get_running_loop().time() < deadline, f"not within {timeout} s: {what}\n{bus.worker.log_tail()}"
        await asyncio.sleep(0.2)  # poll interval inside a deadline


async def _records(bootstrap: str, topic: str) -> list:
    return [r async for r in read_topic(bootstrap, topic)]


async def _partitions(bootstrap: str, topic: str) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return None
        [description] = await admin.describe_topics([topic])
        return len(description["partitions"])
    finally:
        await admin.close()


async def test_a_kafka_subscription_cannot_name_a_topic_and_gets_its_own(kafka_bootstrap, tmp_path):
    async with running_bus(
        kafka_bootstrap,
        tmp_path,
        SAMBAND_API_TOKENS=f"{TOKEN}=subscriptions:read+subscriptions:write+subscriptions:operator",
    ) as bus:
        own = bus.subscriber_topic("kafka-own")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(base_url=bus.registry_url) as http:

            async def api_up() -> bool:
                try:
                    async with http.get("/openapi.json") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await _until(api_up, 90, "the subscriptions API answers", bus)
            # The bus's own topics, another subscriber's and even its own name: a topic is never chosen.
            for topic in (
                bus.topic("delivery-status"),
                bus.topic("router-persons"),
                bus.subscriber_topic("other"),
                own,
            ):
                async with http.post(
                    "/subscriptions", json=_kafka_subscription("kafka-own", topic=topic), headers=headers
                ) as r:
                    body = await r.json()
                    assert r.status == 422, (topic, r.status, body)
                    assert any("topic cannot be chosen" in p for p in body["problems"]), body
            async with http.post("/subscriptions", json=_kafka_subscription("kafka-own"), headers=headers) as r:
                assert r.status == 201, await r.text()

        # Written around the API, straight to the topic: the worker refuses those targets, and lives.
        await bus.subscribe_kafka("kafka-evil", FIELDS, topic=bus.topic("delivery-status"))
        await bus.subscribe_kafka("kafka-thief", FIELDS, topic=own)
        await bus.send(
            _moves("kafka-own", 3, "own") + _moves("kafka-evil", 3, "evil") + _moves("kafka-thief", 3, "thief")
        )

        async def own_has_its_records() -> bool:
            return len(await _records(kafka_bootstrap, own)) >= 3

        await _until(own_has_its_records, 90, "kafka-own's records on its topic", bus)
        assert await _partitions(kafka_bootstrap, own) == 4  # created by the bus, with the bus's partition count
        on_own = await _records(kafka_bootstrap, own)
        assert sorted(dict(r.headers)["samband-idempotency-key"].decode() for r in on_own) == [
            f"own-{p}.kafka-own" for p in range(3)
        ]
        status = await _records(kafka_bootstrap, bus.topic("delivery-status"))
        assert {r.key for r in status} <= {b"kafka-own"} and all(isinstance(json.loads(r.value), dict) for r in status)
        assert await _partitions(kafka_bootstrap, bus.subscriber_topic("kafka-evil")) is None  # nothing went anywhere
        assert bus.worker.process.poll() is None, bus.worker.log_tail()


# What a subscriber's Avro record (a street name in it), or any other writer, might leave on an internal topic.
AVRO = b"\x00\x00\x00\x00\x07\x14Storgata 99"
GARBAGE = {
    "delivery-status": [(b"0" * 32, AVRO), (b"list-status", b"[1]"), (b"\xff\xfe", b"{}")],
    "subscriptions": [(b"0" * 32, AVRO), (b"list-sub", b"[1]"), (b"\xff\xfe", b"{}")],
    "delivery-pending": [
        (b"garbage-hook/" + b"1" * 32, AVRO),
        (b"garbage-hook/" + b"2" * 32, b'{"queue": [{"key": 1}], "seen": 0}'),
        (b"\xff\xfe", b"{}"),
    ],
}


async def _malformed_counts(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        text = await response.text()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "samband_malformed_records_total":
                counts[sample.labels["topic"]] = counts.get(sample.labels["topic"], 0) + sample.value
    return counts


async def test_malformed_records_on_internal_topics_are_skipped_counted_and_survive_a_restart(
    kafka_bootstrap, tmp_path
):
    async with running_bus(kafka_bootstrap, tmp_path) as bus:
        receiver = Receiver(bus.secret)
        await receiver.start()
        try:
            await bus.subscribe("garbage-hook", receiver.url, **FAST)

            async def delivered(prefix: str, count: int) -> None:
                await bus.send(bus.events_for("garbage-hook", persons=count, per_person=1, prefix=prefix))
                await bus.wait_for(
                    receiver,
                    lambda: sum(e.webhook_id.startswith(prefix) for e in receiver.events()) >= count,
                    90,
                    f"the {prefix} events delivered",
                )

            await delivered("before", 3)
            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
            await producer.start()
            try:
                for name, records in GARBAGE.items():
                    for key, value in records:
                        await producer.send_and_wait(bus.topic(name), value, key=key, partition=0)
            finally:
                await producer.stop()
            await delivered("following", 3)  # the followers read the garbage as it came

            assert bus.worker.stop() == 0, bus.worker.log_tail()
            bus.worker.start()  # reads every internal topic from its start again
            await delivered("restarted", 3)
            counts = await _malformed_counts(bus.registry_url)
        finally:
            await receiver.stop()
    for name, records in GARBAGE.items():
        assert counts.get(bus.topic(name), 0) >= len(records), (name, counts)
    assert "Storgata" not in bus.worker.log_path.read_text(errors="replace")  # skipped records are named, never shown


def test_a_subscriber_topic_prefix_that_could_name_a_bus_topic_is_refused_at_start(kafka_bootstrap, tmp_path):
    app_id = unique_name("prefix")
    env = {
        **os.environ,
        "SAMBAND_APP_ID": app_id,
        "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SAMBAND_DATA_DIR": str(tmp_path),
        "SAMBAND_WEB_PORT": str(free_port()),
    }
    for prefix in (f"{app_id}-x.", app_id[:3], "__"):
        result = subprocess.run(
            [sys.executable, "-m", "agents.cli", "worker"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "SAMBAND_SUBSCRIBER_TOPIC_PREFIX": prefix},
        )
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, (prefix, result.stderr)
        assert lines[0].startswith("samband: SAMBAND_SUBSCRIBER_TOPIC_PREFIX:"), lines
