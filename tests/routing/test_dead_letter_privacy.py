"""Dead letters hold no readable personal data (issue 13, finding 1): every value is sealed, and a
strengt fortrolig person's address is scrubbed as far as the input could be read, also when the event
failed before it was decoded (`json.field_type`, `ingest.oversized`, `cloudevent.*`)."""

from __future__ import annotations

import asyncio
import json

from kafka_io import produce, read_to_end
from routing_events import address, cloudevent_json, event, synthetic_number
from support import open_dead_letter
from worker_process import WorkerProcess

from connectors.dead_letters import DeadLetter, DeadLetterSeal

STREET = "Skjultveien"
PERSON = synthetic_number(14, 3, 79, 410)


def _hidden_move(**change) -> dict:
    record = event(
        "Move",
        PERSON,
        ["4601"],
        previousAddress=address("4601", "Gammelgata", 3),
        newAddress=address("4601", STREET, 7),
        scope="withinKommune",
    )
    record["envelope"]["addressProtection"] = "strengtFortrolig"
    body = json.loads(cloudevent_json(record))
    body["data"].update(change.pop("data", {}))
    return body | change


async def test_a_strengt_fortrolig_event_that_fails_before_decoding_leaves_nothing_readable(
    kafka_bootstrap, bus, bus_env, tmp_path
):
    wrong_type = _hidden_move(data={"movedDate": 20240301})  # json.field_type: the event never became a record
    oversized = _hidden_move(padding="x" * 5000)  # ingest.oversized (SAMBAND_INGEST_MAX_BYTES=4096)
    bad_version = _hidden_move(specversion="0.3")  # cloudevent.invalid
    sent = [json.dumps(e).encode() for e in (wrong_type, oversized, bad_version)]
    await produce(kafka_bootstrap, bus.ingest, sent, [b"k"] * len(sent))

    worker = WorkerProcess(bus_env, tmp_path / "worker.log")
    worker.start()
    try:
        deadline = asyncio.get_running_loop().time() + 90
        while len(dead := await read_to_end(kafka_bootstrap, bus.deadletter)) < len(sent):
            assert asyncio.get_running_loop().time() < deadline, worker.log_tail()
            assert worker.process.poll() is None, worker.log_tail()
            await asyncio.sleep(0.2)  # poll interval inside the deadline
    finally:
        assert worker.stop() == 0, worker.log_tail()

    assert sorted(DeadLetter.from_headers(d.headers).reason for d in dead) == sorted(
        ["json.field_type", "ingest.oversized", "cloudevent.invalid"]
    )
    for record in dead:
        raw = record.value + b"".join(v for _, v in record.headers)
        assert record.value.startswith(DeadLetterSeal.SEALED)
        for personal in (STREET.encode(), PERSON.encode(), b"Gammelgata"):
            assert personal not in raw
        letter = DeadLetter.from_headers(record.headers)
        assert letter.scrubbed == "address"
        opened = json.loads(open_dead_letter(record.value))
        assert "newAddress" not in opened["data"] and "kommunenummer" not in opened and STREET not in json.dumps(opened)
        assert letter.event_id == opened["id"]
