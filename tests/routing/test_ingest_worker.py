"""The ingest agent in a real `samband worker` against the real broker: canonical events keyed by
pseudonym, every bad message dead-lettered with its reason and original bytes, a duplicate counted
and logged (not a dead letter), the rest untouched."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from bus_settings import PSEUDONYM_KEY
from kafka_io import consume, produce, read_to_end
from routing_events import CODEC, address, cloudevent_json, encode, event, synthetic_number
from support import open_dead_letter
from worker_process import WorkerProcess

from bus.record_batches import murmur2
from connectors.dead_letters import DeadLetter
from schemas.pseudonym import pseudonym

PERSON = synthetic_number(3, 4, 79, 200)
OTHER = synthetic_number(9, 7, 81, 300)


async def _logged(worker: WorkerProcess, text: str, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while text not in worker.log_path.read_text():
        assert asyncio.get_running_loop().time() < deadline, f"{text!r} not logged:\n{worker.log_tail()}"
        assert worker.process.poll() is None, worker.log_tail()
        await asyncio.sleep(0.1)  # poll interval inside the deadline


async def test_ingest_writes_valid_events_once_and_dead_letters_the_rest(kafka_bootstrap, bus, bus_env, tmp_path):
    move = event(
        "Move",
        PERSON,
        ["0301", "4601"],
        previousAddress=address("0301", "Gamlevegen", 1),
        newAddress=address("4601", "Nyvegen", 2),
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
    }
    duplicate = encode(move)  # the Move again, as a source retrying after an unanswered write sends it
    values = [
        valid[0],
        bad["wire.truncated"],
        valid[1],
        bad["json.field_type"],
        bad["ingest.unrecognised_format"],
        bad["kommune.unknown"],
        valid[2],
        duplicate,
    ]
    # One key for all, as a connector keying by person would: one partition, so the duplicate comes second.
    key = pseudonym(PERSON, PSEUDONYM_KEY.encode()).encode()
    await produce(kafka_bootstrap, bus.ingest, values, [key] * len(values))
    # Another person's event written with no key: its canonical event still goes where Kafka puts its pseudonym.
    unkeyed = event("Death", OTHER, ["0301"])
    await produce(kafka_bootstrap, bus.ingest, [encode(unkeyed)], [None])

    worker = WorkerProcess(bus_env, tmp_path / "worker.log")
    worker.start()
    try:
        both = await consume(kafka_bootstrap, bus.events, len(valid) + 1, timeout=60)
        await _logged(worker, '"event": "ingest.duplicate"', 30)
        # The ids it has seen are on disk (RocksDB), not in memory: a week of them is millions at
        # national scale (found by bench/bench_national.py: over 1 GiB per worker process).
        state = Path(bus_env["SAMBAND_DATA_DIR"]) / "state"
        assert list(state.glob(f"*/{bus.ingest_seen_ids}/CURRENT")), sorted(str(p) for p in state.rglob("*"))
        letters = await read_to_end(kafka_bootstrap, bus.deadletter)
    finally:
        assert worker.stop() == 0, worker.log_tail()
    [dropped] = [json.loads(line) for line in worker.log_path.read_text().splitlines() if '"ingest.duplicate"' in line]
    assert dropped["event_id"] == move["envelope"]["id"]

    # Keyed by pseudonym, in the partition Kafka's default partitioner gives it, as every stage expects.
    other_key = pseudonym(OTHER, PSEUDONYM_KEY.encode()).encode()
    for record in both:
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % 4
    assert {r.key for r in both} == {key, other_key}
    events = [r for r in both if r.key == key]
    assert [CODEC.decode(r.value)["envelope"]["id"] for r in events] == [
        move["envelope"]["id"],
        married["envelope"]["id"],
        death["envelope"]["id"],
    ]
    assert {r.key for r in events} == {key}
    assert events[0].value == valid[0]  # already canonical: passed through byte for byte

    by_reason = {DeadLetter.from_headers(r.headers).reason: r for r in letters}
    assert len(letters) == len(bad) and set(by_reason) == set(bad)  # the duplicate is not among them
    for reason, original in bad.items():
        letter = by_reason[reason]
        assert open_dead_letter(letter.value) == original
        assert DeadLetter.from_headers(letter.headers).stage == "ingest"
        assert DeadLetter.from_headers(letter.headers).topic == bus.ingest
    assert PERSON not in worker.log_path.read_text()
