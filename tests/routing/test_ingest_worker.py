"""The ingest agent in a real `samband worker` against the real broker: canonical events keyed by
pseudonym, every bad message dead-lettered with its reason and original bytes, the rest untouched."""

from __future__ import annotations

import json

from bus_settings import PSEUDONYM_KEY
from kafka_io import consume, produce
from routing_events import CODEC, address, cloudevent_json, encode, event, synthetic_number
from support import open_dead_letter
from worker_process import WorkerProcess

from connectors.dead_letters import DeadLetter
from schemas.pseudonym import pseudonym

PERSON = synthetic_number(3, 4, 79, 200)


async def test_ingest_writes_valid_events_once_and_dead_letters_the_rest(kafka_bootstrap, bus, bus_env, tmp_path):
    move = event(
        "Move", PERSON, ["0301", "4601"],
        previousAddress=address("0301", "Gamlevegen", 1), newAddress=address("4601", "Nyvegen", 2),
    )
    death = event("Death", PERSON, ["4601"])
    married = event("CivilStatusChange", PERSON, ["4601"])
    valid = [encode(move), cloudevent_json(married), encode(death)]
    bad_json = json.loads(cloudevent_json(married))
    bad_json["data"]["validFrom"] = "first of May"
    bad = {
        "wire.truncated": encode(death)[:20],
        "json.field_type": json.dumps(bad_json).encode(),
        "ingest.unrecognised_format": b"\x89PNG\r\n",
        "kommune.unknown": encode(event("Death", PERSON, ["9999"])),
        "event.duplicate": encode(move),
    }
    values = [valid[0], bad["wire.truncated"], valid[1], bad["json.field_type"], bad["ingest.unrecognised_format"],
              bad["kommune.unknown"], valid[2], bad["event.duplicate"]]
    # One key for all, as a connector keying by person would: one partition, so the duplicate comes second.
    key = pseudonym(PERSON, PSEUDONYM_KEY.encode()).encode()
    await produce(kafka_bootstrap, bus.ingest, values, [key] * len(values))

    worker = WorkerProcess(bus_env, tmp_path / "worker.log")
    worker.start()
    try:
        events = await consume(kafka_bootstrap, bus.events, len(valid), timeout=60)
        letters = await consume(kafka_bootstrap, bus.deadletter, len(bad), timeout=30)
    finally:
        assert worker.stop() == 0, worker.log_tail()

    assert [CODEC.decode(r.value)["envelope"]["id"] for r in events] == [
        move["envelope"]["id"], married["envelope"]["id"], death["envelope"]["id"]
    ]
    assert {r.key for r in events} == {key}
    assert events[0].value == valid[0]  # already canonical: passed through byte for byte

    by_reason = {DeadLetter.from_headers(r.headers).reason: r for r in letters}
    assert set(by_reason) == set(bad)
    for reason, original in bad.items():
        letter = by_reason[reason]
        assert open_dead_letter(letter.value) == original
        assert DeadLetter.from_headers(letter.headers).stage == "ingest"
        assert DeadLetter.from_headers(letter.headers).topic == bus.ingest
    assert PERSON not in worker.log_path.read_text()
