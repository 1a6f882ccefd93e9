"""Acceptance: each of the 11 classes of bad input lands in the dead-letter topic with its own reason
code, original bytes and headers; a duplicate is dropped without a dead letter (at-least-once sources
send them); every valid event around them is routed."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta

from aiokafka import AIOKafkaProducer
from bus_settings import PSEUDONYM_KEY
from kafka_io import read_to_end
from routing_events import address, cloudevent_json, encode, event, synthetic_number
from subscription_factory import subscription
from support import open_dead_letter
from worker_process import WorkerProcess, wait_for_commits

from agents.subscriptions.store import write
from agents.tracing import from_kafka_headers, parse
from connectors.dead_letters import DeadLetter
from schemas.pseudonym import pseudonym

OSLO = "0301"


def _person(n: int) -> str:
    return synthetic_number(1 + n % 28, 1 + n % 12, 60, 700 + n)


def _bad_inputs() -> dict[str, bytes]:
    death = event("Death", _person(1), [OSLO])
    wrong_type = json.loads(cloudevent_json(event("Death", _person(2), [OSLO])))
    wrong_type["data"]["deathDate"] = {"year": 2024}
    unknown_type = json.loads(cloudevent_json(event("Death", _person(3), [OSLO])))
    unknown_type["type"] = "no.samband.events.PersonAscended"
    bad_number = _person(4)[:10] + str((int(_person(4)[10]) + 1) % 10)
    move = event(
        "Move", _person(5), [OSLO], previousAddress=address(OSLO, "Gammel", 1), newAddress=None, scope="withinKommune"
    )
    oversized = json.loads(cloudevent_json(event("Death", _person(6), [OSLO])))
    oversized["padding"] = "x" * 5000
    future = event("Death", _person(7), [OSLO], deathDate=date.today() + timedelta(days=3))
    orphan = event(
        "Death", _person(8), [OSLO], envelope={"changeKind": "correction", "correctsEventId": str(uuid.uuid4())}
    )
    return {
        "wire.truncated": encode(death)[:30],
        "wire.unknown_schema_id": bytes([0]) + (987654).to_bytes(4, "big") + encode(death)[5:],
        "json.field_type": json.dumps(wrong_type).encode(),
        "identity.checksum": encode(event("Death", bad_number, [OSLO])),
        "kommune.unknown": encode(event("Death", _person(9), ["0000"])),
        "event.unknown_type": json.dumps(unknown_type).encode(),
        "relation.missing_new_address": encode(move),
        "ingest.oversized": json.dumps(oversized).encode(),
        "ingest.unrecognised_format": "ceci n'est pas un événement".encode(),
        "date.future": encode(future),
        "relation.unknown_corrected_event": encode(orphan),
    }


async def test_eleven_classes_of_bad_input_are_dead_lettered_a_duplicate_dropped_and_the_rest_routed(
    kafka_bootstrap, bus, bus_env, tmp_path
):
    sub = subscription("alle-dodsfall", "all", ["Death"], {"Death": ["deathDate"]})
    await write(kafka_bootstrap, bus.subscriptions, [(sub.id, sub.to_json())])
    valid = [event("Death", _person(20 + n), [OSLO]) for n in range(12)]
    bad = _bad_inputs()
    values = []
    for n, value in enumerate(bad.values()):
        values += [encode(valid[n]), value]
    values += [encode(valid[11]), encode(valid[3])]  # a valid event sent twice: dropped, not a dead letter
    keys = [pseudonym(_person(99), PSEUDONYM_KEY.encode()).encode()] * len(values)  # one partition: order kept
    traced = [("traceparent", f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01".encode())]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in zip(keys, values, strict=False):
            await (await producer.send(bus.ingest, value=value, key=key, headers=traced))
    finally:
        await producer.stop()

    # The orphan correction is dead-lettered at once (no wait for its original: tests/routing/test_held_corrections.py).
    worker = WorkerProcess({**bus_env, "SAMBAND_CORRECTION_HOLD_SECONDS": "0"}, tmp_path / "worker.log")
    worker.start()
    try:
        reaching_router = len(valid) + 1  # the orphan correction is valid at ingest and refused by the router
        app_id = bus_env["SAMBAND_APP_ID"]
        await wait_for_commits(kafka_bootstrap, f"{app_id}-ingest", len(values), timeout=90, worker=worker)
        await wait_for_commits(kafka_bootstrap, f"{app_id}-router", reaching_router, timeout=90, worker=worker)
    finally:
        assert worker.stop() == 0, worker.log_tail()

    letters = await read_to_end(kafka_bootstrap, bus.deadletter)
    by_reason = {DeadLetter.from_headers(r.headers).reason: r for r in letters}
    assert sorted(by_reason) == sorted(bad) and len(letters) == len(bad)
    for reason, original in bad.items():
        letter = by_reason[reason]
        assert open_dead_letter(letter.value) == original, reason  # sealed: the original opens with the key
        stage = DeadLetter.from_headers(letter.headers).stage
        assert stage == ("route" if reason == "relation.unknown_corrected_event" else "ingest"), reason
        if stage == "ingest":  # the record as it came
            assert ("traceparent", traced[0][1]) in letter.headers, reason
        else:  # the events record the router refused: same trace, ingest's span
            assert from_kafka_headers(letter.headers).trace_id == parse(traced[0][1].decode()).trace_id, reason
    routed = [json.loads(r.value)["event"]["id"] for r in await read_to_end(kafka_bootstrap, bus.deliveries)]
    assert sorted(routed) == sorted(v["envelope"]["id"] for v in valid)
