"""Life-stage events through a real worker, to real webhook receivers.

The worker's life-stage clock is simulated (SAMBAND_LIFE_STAGES_SIMULATED_START): it is 1 August
2027, the day children born by August 2026 get their kindergarten right and those born in 2021
start school. The router emits those stages as canonical events, and they are routed, projected
and protected like any other. The simulated-clock count over 100,000 persons is in
test_life_stage_schedule.py.
"""

from __future__ import annotations

from datetime import date

import pytest
from delivery_bus import running_bus
from kafka_io import produce
from routing_events import address, encode, event, synthetic_number
from support import pseudonym_key
from webhook_receiver import Receiver

from agents.routing.life_stages import stage_event_id
from bus.reading import read_topic
from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.pseudonym import pseudonym
from schemas.registry import CatalogRegistry

OSLO = "0301"
DAY = date(2027, 8, 1)  # the worker's simulated life-stage clock: the day it learns the births, and emits
STAGES = ["KindergartenRight", "SchoolStart"]
STAGE_FIELDS = ["envelope.person", "envelope.kommunenummer", "stageDate", "birthDate", "ageYears", "legalBasis"]
FAST = {"retry_schedule": [0.1, 0.2, 0.3], "read_timeout": 2.0, "connect_timeout": 0.5}


def _birth(number: str, born: date, protection: str = "ugradert") -> dict:
    strict = protection != "ugradert"
    return event(
        "Birth",
        number,
        [] if strict else [OSLO],
        birthDate=born,
        address=None if strict else address(OSLO, "Barnevegen", 2),
        envelope={"addressProtection": protection},
    )


@pytest.fixture
async def bus(kafka_bootstrap, tmp_path):
    settings = {"SAMBAND_LIFE_STAGES_SIMULATED_START": "2027-08-01T08:00:00+02:00"}
    async with running_bus(kafka_bootstrap, tmp_path, **settings) as bus:
        yield bus


async def test_stages_due_reach_the_kommune_once_and_a_protected_childs_carry_no_kommune(bus, kafka_bootstrap):
    kommune, national = Receiver(bus.secret), Receiver(bus.secret)
    await kommune.start()
    await national.start()
    fields = dict.fromkeys(STAGES, STAGE_FIELDS)
    try:
        await bus.put_subscription(
            {
                "id": "oslo-oppvekst",
                "fields": {**fields, "Death": ["deathDate"]},
                "delivery": _webhook(kommune, "oslo-oppvekst"),
            }
        )
        await bus.put_subscription(
            {
                "id": "nasjonal-tilsyn",
                "public_body": True,
                "kommuner": "all",
                "fields": fields,
                "delivery": _webhook(national, "nasjonal-tilsyn"),
            }
        )
        child = synthetic_number(10, 2, 26, 100)  # one on 10 February 2027: kindergarten from 1 August
        pupil = synthetic_number(10, 3, 21, 100)  # six in 2027: school from 1 August; known from an extract
        hidden = synthetic_number(5, 5, 26, 100)  # strengt fortrolig from birth, kindergarten from 1 August
        newborn = synthetic_number(1, 11, 26, 100)  # one in November 2027: its right is still to come
        grown = synthetic_number(10, 3, 20, 100)  # its kindergarten and school were due before the bus knew it
        births = [
            _birth(child, date(2026, 2, 10)),
            event(  # a register extract's record: teaches the bus, goes to no one itself
                "PopulationRecord", pupil, [OSLO], birthDate=date(2021, 3, 10), address=address(OSLO, "Skolevegen", 6)
            ),
            _birth(hidden, date(2026, 5, 5), "strengtFortrolig"),
            _birth(newborn, date(2026, 11, 1)),
            _birth(grown, date(2020, 3, 10)),
        ]
        await _ingest(bus, kafka_bootstrap, births)

        key = pseudonym_key()
        child_id = stage_event_id(pseudonym(child, key), "KindergartenRight", date(2026, 2, 10), DAY)
        pupil_id = stage_event_id(pseudonym(pupil, key), "SchoolStart", date(2021, 3, 10), DAY)
        hidden_id = stage_event_id(pseudonym(hidden, key), "KindergartenRight", date(2026, 5, 5), DAY)
        await bus.wait_for(kommune, lambda: len(kommune.events()) >= 2, 90, "the two stages due in Oslo")
        await bus.wait_for(national, lambda: len(national.events()) >= 3, 60, "three stages nationally")

        got = {r.event["id"]: r.event for r in kommune.events()}
        assert set(got) == {child_id, pupil_id}, "the kommune gets the stages due, never the protected child's"
        kindergarten = got[child_id]
        assert kindergarten["type"] == "no.samband.events.KindergartenRight"
        assert kindergarten["source"] == "urn:no:samband:life-stages"
        assert kindergarten.get_data() == {
            "envelope": {"person": child, "kommunenummer": [OSLO]},
            "stageDate": "2027-08-01",
            "birthDate": "2026-02-10",
            "ageYears": 1,
            "legalBasis": "barnehageloven § 16",
        }
        assert got[pupil_id]["type"] == "no.samband.events.SchoolStart"
        assert got[pupil_id].get_data()["ageYears"] == 6

        protected = {r.event["id"]: r for r in national.events()}[hidden_id]
        data = protected.event.get_data()
        assert data["envelope"].get("kommunenummer") in (None, []) and data["stageDate"] == "2027-08-01"
        assert b"0301" not in protected.body and b"Barnevegen" not in protected.body
        assert protected.event["source"] != "urn:no:samband:life-stages", "a strict person's source is neutral"

        # An annulled birth retracts the stage sent: an annulment of it, to whoever got it.
        annulled = _birth(child, date(2026, 2, 10))
        annulled["envelope"].update(changeKind="annulment", correctsEventId=births[0]["envelope"]["id"])
        await _ingest(bus, kafka_bootstrap, [annulled])
        await bus.wait_for(kommune, lambda: len(kommune.events()) >= 3, 60, "the retraction")
        retraction = kommune.events()[2].event
        assert (retraction["changekind"], retraction["correctseventid"]) == ("annulment", child_id)

        # A restart emits nothing again: every stage event in the bus is there once.
        bus.worker.stop()
        bus.worker.start()
        marker = event("Death", synthetic_number(2, 2, 60, 100), [OSLO], deathDate=date(2026, 12, 1))
        await _ingest(bus, kafka_bootstrap, [marker])
        await bus.wait_for(kommune, lambda: len(kommune.events()) >= 4, 90, "the marker after the restart")
    finally:
        await kommune.stop()
        await national.stop()
    assert [r.event["id"] for r in kommune.events()][3:] == [marker["envelope"]["id"]]
    stage_events = [
        record
        async for record in read_topic(kafka_bootstrap, bus.topic("events"), timeout=30)
        if record.value and _type(record.value) in STAGES
    ]
    assert sorted(_id(r.value) for r in stage_events) == sorted(
        [
            child_id,
            pupil_id,
            hidden_id,
            stage_event_id(pseudonym(child, key), "KindergartenRight", date(2026, 2, 10), DAY, "annulment"),
        ]
    )


def _webhook(receiver: Receiver, sub_id: str) -> dict:
    return {"kind": "webhook", "url": receiver.url, "secret_ref": f"file:{sub_id}", **FAST}


async def _ingest(bus, bootstrap: str, records: list[dict]) -> None:
    key = pseudonym_key()
    await produce(
        bootstrap,
        bus.topic("ingest"),
        [encode(r) for r in records],
        [pseudonym(r["envelope"]["person"], key).encode() for r in records],
    )


_CODEC = Codec(CatalogRegistry(catalog()))


def _type(value: bytes) -> str:
    return _CODEC.decode(value)["envelope"]["type"].rpartition(".")[2]


def _id(value: bytes) -> str:
    return _CODEC.decode(value)["envelope"]["id"]
