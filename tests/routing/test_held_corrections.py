"""A correction that arrives before the event it corrects (issue 14, finding 4) is held by the router,
in its state, and routed right after that event; one whose event never comes is dead-lettered once
SAMBAND_CORRECTION_HOLD_SECONDS have passed, saying so. A real worker on the real broker."""

from __future__ import annotations

import json
import time

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from bus_settings import PSEUDONYM_KEY
from kafka_io import consume, produce, read_to_end
from routing_events import encode, event, synthetic_number
from subscription_factory import subscription
from support import open_dead_letter
from worker_process import WorkerProcess, wait_for_commits

from agents.subscriptions.store import write
from bus.topics import topic_names
from connectors.dead_letters import DeadLetter
from schemas.pseudonym import pseudonym

PERSON = synthetic_number(12, 5, 81, 610)
KEY = pseudonym(PERSON, PSEUDONYM_KEY.encode()).encode()


def _death_and_its_correction() -> tuple[dict, dict]:
    death = event("Death", PERSON, ["0301"])
    correction = event(
        "Death", PERSON, ["0301"], envelope={"changeKind": "correction", "correctsEventId": death["envelope"]["id"]}
    )
    return death, correction


async def test_a_correction_before_its_original_is_held_and_routed_right_after_it(
    kafka_bootstrap, bus, bus_env, tmp_path
):
    sub = subscription("held-dodsfall", "all", ["Death"], {"Death": ["deathDate"]})
    await write(kafka_bootstrap, bus.subscriptions, [(sub.id, sub.to_json())])
    death, correction = _death_and_its_correction()
    app_id = bus_env["SAMBAND_APP_ID"]
    worker = WorkerProcess(bus_env, tmp_path / "worker.log")
    worker.start()
    try:
        await produce(kafka_bootstrap, bus.ingest, [encode(correction)], [KEY])  # overtook its original
        await wait_for_commits(kafka_bootstrap, f"{app_id}-router", 1, timeout=90, worker=worker)
        assert await read_to_end(kafka_bootstrap, bus.deliveries) == []  # held, not routed
        assert await read_to_end(kafka_bootstrap, bus.deadletter) == []  # and not dead-lettered
        await produce(kafka_bootstrap, bus.ingest, [encode(death)], [KEY])
        deliveries = await consume(kafka_bootstrap, bus.deliveries, 2, timeout=60)
    finally:
        assert worker.stop() == 0, worker.log_tail()
    routed = [json.loads(r.value)["event"] for r in deliveries]
    assert [(e["id"], e.get("changekind")) for e in routed] == [
        (death["envelope"]["id"], "new"),
        (correction["envelope"]["id"], "correction"),
    ]
    assert await read_to_end(kafka_bootstrap, bus.deadletter) == []


async def test_a_correction_whose_original_never_comes_is_dead_lettered_after_the_wait(
    kafka_bootstrap, bus, bus_env, tmp_path
):
    _, correction = _death_and_its_correction()
    worker = WorkerProcess({**bus_env, "SAMBAND_CORRECTION_HOLD_SECONDS": "2"}, tmp_path / "worker.log")
    worker.start()
    try:
        await produce(kafka_bootstrap, bus.ingest, [encode(correction)], [KEY])
        [letter] = await consume(kafka_bootstrap, bus.deadletter, 1, timeout=60)  # nothing else arrives: the idle poll
    finally:
        assert worker.stop() == 0, worker.log_tail()
    dead = DeadLetter.from_headers(letter.headers)
    assert (dead.reason, dead.stage, dead.event_id) == (
        "relation.unknown_corrected_event",
        "route",
        correction["envelope"]["id"],
    )
    assert "held 2 s for it, and the bus has no routing record of it" in dead.message
    assert open_dead_letter(letter.value) == encode(correction)  # the event as the router read it, sealed


async def test_a_correction_of_an_event_routed_longer_ago_than_the_records_retention_is_dead_lettered_saying_so(
    kafka_bootstrap, bus, bus_env, tmp_path
):
    """Routing records expire after SAMBAND_ROUTING_RECORDS_RETENTION_DAYS (issue 17, item 1). The
    records of two earlier Deaths are in the router's changelog: one routed two years ago, one an
    hour ago. The worker recovers both; only the recent one is still known."""
    sub = subscription("held-dodsfall", "all", ["Death"], {"Death": ["deathDate"]})
    await write(kafka_bootstrap, bus.subscriptions, [(sub.id, sub.to_json())])
    old_death, old_correction = _death_and_its_correction()
    recent_death, recent_correction = _death_and_its_correction()
    records = topic_names(bus_env["SAMBAND_APP_ID"]).router_records
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(records, 4, 1, topic_configs={"cleanup.policy": "compact,delete", "retention.ms": "-1"})]
        )
    finally:
        await admin.close()
    now_ms = int(time.time() * 1000)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for partition in range(4):  # (whichever partition the person's key chooses)
            for death, age_ms in ((old_death, 730 * 86_400_000), (recent_death, 3_600_000)):
                segment = json.dumps({death["envelope"]["id"]: [sub.id]}).encode()
                await producer.send_and_wait(
                    records, segment, key=death["envelope"]["id"].encode(), partition=partition,
                    timestamp_ms=now_ms - age_ms,
                )  # fmt: skip
    finally:
        await producer.stop()

    worker = WorkerProcess({**bus_env, "SAMBAND_CORRECTION_HOLD_SECONDS": "0"}, tmp_path / "worker.log")
    worker.start()
    try:
        await produce(kafka_bootstrap, bus.ingest, [encode(recent_correction), encode(old_correction)], [KEY, KEY])
        [letter] = await consume(kafka_bootstrap, bus.deadletter, 1, timeout=60)
        [delivery] = await consume(kafka_bootstrap, bus.deliveries, 1, timeout=60)
    finally:
        assert worker.stop() == 0, worker.log_tail()
    assert json.loads(delivery.value)["event"]["id"] == recent_correction["envelope"]["id"]  # to whom the record says
    dead = DeadLetter.from_headers(letter.headers)
    assert (dead.reason, dead.event_id) == ("relation.unknown_corrected_event", old_correction["envelope"]["id"])
    assert dead.message.endswith(
        "the bus has no routing record of it: not routed, or routed more than 400 days ago "
        "(SAMBAND_ROUTING_RECORDS_RETENTION_DAYS)"
    )
