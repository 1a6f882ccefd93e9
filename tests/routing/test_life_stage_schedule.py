"""Life stages under a simulated clock: 100,000 synthetic persons, 400 days, one restart.

The router's scheduler (agents/routing/life_stages.py) is driven day by day; what it emits is
compared with what is counted here from the birth dates alone, with the rules written out anew
from the law's text (barnehageloven § 16, opplæringslova). No broker: the real-broker flow is in
test_life_stages_flow.py."""

from __future__ import annotations

import calendar
import os
import random
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

import numpy as np

from agents.routing.life_stages import OSLO, LifeStages, NumberSeal
from agents.routing.router import PersonState
from bus.state import PartitionedState
from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.pseudonym import pseudonym
from schemas.registry import CatalogRegistry
from synthetic.identity_numbers import EPOCH, IdentityAllocator, format_identity

START = date(2027, 1, 1)
DAYS = 400
PERSONS = 100_000
PARTITIONS = 4
KEY = b"k" * 32


def expected_date(stage: str, born: date) -> date:
    """Each stage's date, from the rules as the law states them (not the bus's code)."""

    def turns(years: int) -> date:
        if (born.month, born.day) == (2, 29) and not calendar.isleap(born.year + years):
            return date(born.year + years, 3, 1)
        return date(born.year + years, born.month, born.day)

    if stage == "KindergartenRight":
        one = turns(1)
        if one.month in (9, 10, 11):  # by the end of the month the child turns one
            return date(one.year, one.month, calendar.monthrange(one.year, one.month)[1])
        return date(one.year if one.month <= 8 else one.year + 1, 8, 1)
    if stage == "SchoolStart":
        return date(born.year + 6, 8, 1)
    return turns({"Adulthood": 18, "RetirementAge": 67, "Age80": 80}[stage])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def set(self, day: date) -> None:
        self.now = datetime.combine(day, time(9), OSLO).timestamp()

    def __call__(self) -> float:
        return self.now


def _population(rng: random.Random) -> list[tuple[str, date, str, bool]]:
    """(number, birth date, kommune, strengt fortrolig) for PERSONS synthetic persons aged 0 to 100."""
    first = (date(START.year - 100, 1, 1) - date(1970, 1, 1)).days
    days = np.array([rng.randrange(first, (START - date(1970, 1, 1)).days) for _ in range(PERSONS)])
    numbers = IdentityAllocator().allocate(days, np.zeros(PERSONS, dtype=bool))
    kommuner = ["0301", "4601", "5001", "1103"]
    return [
        (
            format_identity(int(n)),
            (EPOCH + np.timedelta64(int(d), "D")).astype(object),
            rng.choice(kommuner),
            rng.random() < 0.01,
        )
        for n, d in zip(numbers, days, strict=True)
    ]


def _birth(number: str, born: date, kommune: str, protection: str) -> dict:
    """A Birth as the router reads it, learned by the bus on START (a register load)."""
    return {
        "envelope": {
            "person": number,
            "time": datetime.combine(START, time(0, 30), UTC),
            "changeKind": "new",
            "kommunenummer": [] if protection != "ugradert" else [kommune],
            "addressProtection": protection,
        },
        "birthDate": born,
        "address": None,
    }


def _death(number: str) -> dict:
    return {"envelope": {"person": number, "time": datetime.now(UTC), "changeKind": "new", "kommunenummer": []}}


def test_a_simulated_year_emits_each_stage_on_its_day_exactly_as_counted_from_the_birth_dates():
    rng = random.Random(20270101)
    codec = Codec(CatalogRegistry(catalog()))
    persons = PartitionedState("test-router-persons", {})
    persons.partitions = {p: {} for p in range(PARTITIONS)}
    clock = Clock()
    clock.set(START)
    seal = NumberSeal(os.urandom(32))
    life = LifeStages(codec, seal, persons, "test-events", clock)

    population = _population(rng)
    people: dict[str, tuple[str, date, bool]] = {}
    deaths: dict[date, list[tuple[int, str, str]]] = {}
    for number, born, kommune, strict in population:
        person = pseudonym(number, KEY)
        partition = hash(person) % PARTITIONS
        protection = "strengtFortrolig" if strict else "ugradert"
        state = life.observe("Birth", _birth(number, born, kommune, protection), PersonState(protection, born))
        persons.set(partition, person, state.to_json())
        life.schedule(partition, person, state)
        people[person] = (number, born, strict)
        if rng.random() < 0.01:  # one in a hundred dies during the year
            deaths.setdefault(START + timedelta(days=rng.randrange(DAYS)), []).append((partition, person, number))

    emitted: Counter[tuple[str, date]] = Counter()
    ids: set[str] = set()
    died_on: dict[str, date] = {}
    for day in (START + timedelta(days=n) for n in range(DAYS)):
        if day == START + timedelta(days=DAYS // 2):  # a restart: everything from the state alone
            life = LifeStages(codec, seal, persons, "test-events", clock)
            life.recovered(set(range(PARTITIONS)))
        for partition, person, number in deaths.get(day, []):
            state = life.observe("Death", _death(number), PersonState.from_json(persons.get(partition, person)))
            persons.set(partition, person, state.to_json())
            life.schedule(partition, person, state)
            died_on[person] = day
        clock.set(day)
        outputs: list = []
        life.emit_due(outputs)
        for topic, key, value, _headers, partition in outputs:
            assert topic == "test-events" and partition == hash(key.decode()) % PARTITIONS
            record = codec.decode(value)
            envelope = record["envelope"]
            stage = envelope["type"].rpartition(".")[2]
            number, born, strict = people[key.decode()]
            assert envelope["person"] == number and record["birthDate"] == born
            assert record["stageDate"] == day, "emitted on its own date"
            assert envelope["id"] not in ids, "no stage emitted twice, across the restart too"
            ids.add(envelope["id"])
            if strict:  # no address and no kommune, not even in the bus
                assert envelope["kommunenummer"] == [] and envelope["addressProtection"] == "strengtFortrolig"
            else:
                assert len(envelope["kommunenummer"]) == 1
            emitted[(stage, day)] += 1

    counted: Counter[tuple[str, date]] = Counter()
    end = START + timedelta(days=DAYS - 1)
    for person, (_, born, _) in people.items():
        for stage in ("KindergartenRight", "SchoolStart", "Adulthood", "RetirementAge", "Age80"):
            on = expected_date(stage, born)
            if START <= on <= end and not (person in died_on and died_on[person] <= on):
                counted[(stage, on)] += 1

    assert sum(counted.values()) > 4_000  # the year holds every stage many times over
    assert {stage for stage, _ in counted} == {
        "KindergartenRight",
        "SchoolStart",
        "Adulthood",
        "RetirementAge",
        "Age80",
    }
    assert emitted == counted


def test_only_stages_due_within_the_horizon_are_held_in_memory():
    """A register extract of the country gives every person under 80 a stage to come: held in
    memory, 5.5 M entries took about 1 GiB per worker (bench/bench_national.py). Only the next
    weeks' are held; the others are found when the horizon reaches them."""
    rng = random.Random(7)
    codec = Codec(CatalogRegistry(catalog()))
    persons = PartitionedState("test-router-persons", {})
    persons.partitions = {0: {}}
    clock = Clock()
    clock.set(START)
    life = LifeStages(codec, NumberSeal(os.urandom(32)), persons, "test-events", clock)
    population = _population(rng)[:5_000]
    for number, born, kommune, _ in population:
        person = pseudonym(number, KEY)
        state = life.observe("Birth", _birth(number, born, kommune, "ugradert"), PersonState("ugradert", born))
        persons.set(0, person, state.to_json())
        life.schedule(0, person, state)
    soon = START + timedelta(days=32)  # life_stages.HORIZON_DAYS
    due_soon = sum(
        1
        for _, born, _, _ in population
        if any(START <= expected_date(s, born) <= soon for s in ("Adulthood", "RetirementAge", "Age80"))
    )
    held = len(life.scheduled[0])
    assert 0 < held <= due_soon + 100 < len(population) // 10  # (kindergarten and school fall on 1 August)
    assert all(when <= soon for when in life.scheduled[0].values())
