"""Acceptance: synthetic persons live a scripted life through a real worker; every subscription
receives exactly the expected events with exactly the granted fields, in order per person, and
nothing the bus produced after strengt fortrolig carries the person's address or kommunenummer."""

from __future__ import annotations

import json
from datetime import date, timedelta

from aiokafka.admin import AIOKafkaAdminClient
from bus_settings import PSEUDONYM_KEY
from kafka_io import produce, read_to_end
from routing_events import address, encode, event, synthetic_number
from subscription_factory import subscription
from worker_process import WorkerProcess, wait_for_commits

from agents.subscriptions.store import write
from schemas.protection import address_paths
from schemas.pseudonym import pseudonym

BERGEN, OSLO, TRONDHEIM = "4601", "0301", "5001"
TODAY = date.today()
A_NUMBER = synthetic_number(TODAY.day, TODAY.month, TODAY.year % 100, 500)  # born today
B_NUMBER = synthetic_number(TODAY.day, TODAY.month, TODAY.year % 100, 600)
A, B = (pseudonym(n, PSEUDONYM_KEY.encode()) for n in (A_NUMBER, B_NUMBER))
# The protected person's later addresses: none of this may leave the bus once protection arrives.
HIDDEN_STREET = "Skjultvegen"

SUBSCRIPTIONS = [
    subscription(
        "bergen-helsestasjon",
        [BERGEN],
        ["Birth", "Move"],
        {
            "Birth": ["envelope.person", "birthDate", "name", "address"],
            "Move": ["envelope.person", "movedDate", "newAddress"],
        },
        predicates={"age_at_event": {"min_years": 0, "max_years": 6}, "move_scope": ["into", "within"]},
    ),
    subscription(
        "oslo-skole",
        [OSLO],
        ["Move", "Death"],
        {
            "Move": ["envelope.person", "movedDate", "newAddress", "scope"],
            "Death": ["deathDate"],
        },
    ),
    subscription(
        "bergen-bibliotek",
        [BERGEN],
        ["Move", "Death"],
        {
            "Move": ["movedDate", "newAddress", "envelope.kommunenummer"],
            "Death": ["deathDate"],
        },
        public_body=False,
    ),
    subscription(
        "nasjonal-nav",
        "all",
        ["Move", "CivilStatusChange", "Death", "AddressProtectionChange"],
        {
            "Move": ["envelope.person", "newAddress", "envelope.kommunenummer"],
            "CivilStatusChange": ["civilStatus", "validFrom"],
            "Death": ["deathDate"],
            "AddressProtectionChange": ["protection"],
        },
    ),
    subscription("oslo-eiendom", [OSLO], ["Death"], {"Death": ["deathDate"]}, public_body=False),
]
FIELDS = {s.id: s.fields for s in SUBSCRIPTIONS}


def _move(person: str, old: str, new: str, street: str, **envelope) -> dict:
    return event(
        "Move",
        person,
        sorted({old, new}),
        movedDate=TODAY,
        previousAddress=address(old, "Forrige", 1),
        newAddress=address(new, street, 7),
        scope="withinKommune" if old == new else "betweenKommuner",
        cause="relocation",
        envelope=envelope,
    )


def _script() -> tuple[list[dict], dict[str, list[tuple[str, str, dict | None]]]]:
    """The events in order, and per subscription the expected (person, kind, record) in order."""
    a_birth = event("Birth", A_NUMBER, [BERGEN], birthDate=TODAY, address=address(BERGEN, "Fødevegen", 1))
    a_move_within = _move(A_NUMBER, BERGEN, BERGEN, "Innavegen")
    a_move_oslo = _move(A_NUMBER, BERGEN, OSLO, "Oslovegen")
    a_marriage = event("CivilStatusChange", A_NUMBER, [OSLO], civilStatus="married", validFrom=TODAY, spouse=None)
    a_correction = event(
        "CivilStatusChange",
        A_NUMBER,
        [OSLO],
        civilStatus="married",
        validFrom=TODAY - timedelta(days=1),
        spouse=None,
        envelope={"changeKind": "correction", "correctsEventId": a_marriage["envelope"]["id"]},
    )
    a_annulment = event(
        "Move",
        A_NUMBER,
        [BERGEN],
        movedDate=TODAY,
        previousAddress=None,
        newAddress=None,
        scope="withinKommune",
        envelope={"changeKind": "annulment", "correctsEventId": a_move_within["envelope"]["id"]},
    )
    a_protected = event(
        "AddressProtectionChange",
        A_NUMBER,
        [OSLO],
        protection="strengtFortrolig",
        envelope={"addressProtection": "strengtFortrolig"},
    )
    # Produced before the grading reached the source: it still says ugradert.
    a_move_hidden = _move(A_NUMBER, OSLO, TRONDHEIM, HIDDEN_STREET, addressProtection="ugradert")
    a_death = event("Death", A_NUMBER, [TRONDHEIM], deathDate=TODAY, envelope={"addressProtection": "strengtFortrolig"})
    b_birth = event("Birth", B_NUMBER, [OSLO], birthDate=TODAY, address=address(OSLO, "Barnevegen", 3))
    b_move = _move(B_NUMBER, OSLO, OSLO, "Nabovegen")
    b_death = event("Death", B_NUMBER, [OSLO], deathDate=TODAY)

    events = [
        a_birth,
        b_birth,
        a_move_within,
        a_move_oslo,
        b_move,
        a_marriage,
        a_correction,
        a_annulment,
        a_protected,
        b_death,
        a_move_hidden,
        a_death,
    ]
    e, purge = "event", "purge"
    expected = {
        "bergen-helsestasjon": [(A, e, a_birth), (A, e, a_move_within), (A, e, a_annulment), (A, purge, None)],
        "bergen-bibliotek": [(A, e, a_move_within), (A, e, a_move_oslo), (A, e, a_annulment), (A, purge, None)],
        "oslo-skole": [(A, e, a_move_oslo), (A, purge, None), (B, e, b_move), (B, e, b_death)],
        "nasjonal-nav": [
            (A, e, a_move_within),
            (A, e, a_move_oslo),
            (A, e, a_marriage),
            (A, e, a_correction),
            (A, e, a_annulment),
            (A, purge, None),
            (A, e, a_protected),
            (A, e, a_move_hidden),
            (A, e, a_death),
            (B, e, b_move),
            (B, e, b_death),
        ],
        "oslo-eiendom": [(B, e, b_death)],
    }
    return events, expected


def _expected_data(sub_id: str, record: dict, protected: bool) -> dict:
    event_type = record["envelope"]["type"].rpartition(".")[2]
    hidden = address_paths(event_type) if protected else frozenset()
    data: dict = {}
    for path in FIELDS[sub_id][event_type]:
        if path in hidden:
            continue
        if path.startswith("envelope."):
            data.setdefault("envelope", {})[path[9:]] = record["envelope"][path[9:]]
        else:
            data[path] = record[path]
    return json.loads(json.dumps(data, default=str))


async def _topics_of(bootstrap: str, app_id: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return [t for t in await admin.list_topics() if t.startswith(app_id)]
    finally:
        await admin.close()


async def test_life_course_routes_exactly_what_each_subscription_is_granted(kafka_bootstrap, bus, bus_env, tmp_path):
    await write(kafka_bootstrap, bus.subscriptions, [(s.id, s.to_json()) for s in SUBSCRIPTIONS])
    events, expected = _script()
    values = [encode(r) for r in events]
    keys = [pseudonym(r["envelope"]["person"], PSEUDONYM_KEY.encode()).encode() for r in events]
    await produce(kafka_bootstrap, bus.ingest, values, keys)

    worker = WorkerProcess(bus_env, tmp_path / "worker.log")
    worker.start()
    try:
        # Both stages have committed everything, each in its own consumer group.
        for stage in ("ingest", "router"):
            await wait_for_commits(
                kafka_bootstrap, f"{bus_env['SAMBAND_APP_ID']}-{stage}", len(events), timeout=90, worker=worker
            )
    finally:
        assert worker.stop() == 0, worker.log_tail()

    deliveries = [json.loads(r.value) for r in await read_to_end(kafka_bootstrap, bus.deliveries)]
    for sub_id, wanted in expected.items():
        # Order is kept per person (each (subscription, person) is one key); persons interleave freely.
        got = sorted((d for d in deliveries if d["subscription"] == sub_id), key=lambda d: d["person"] != A)
        assert [(d["person"], d["kind"], d["event"]["id"]) for d in got] == [
            (p, k, r["envelope"]["id"] if r else f"{_protection_event_id(events)}-purge") for p, k, r in wanted
        ], sub_id
        protected = False
        for delivery, (_, kind, record) in zip(got, wanted, strict=False):
            assert delivery["idempotency_key"] == f"{delivery['event']['id']}.{sub_id}"
            if kind == "purge":
                protected = delivery["person"] == A
                assert delivery["event"]["data"] == {"delete": "address"}
                continue
            assert delivery["event"]["data"] == _expected_data(sub_id, record, protected and delivery["person"] == A), (
                sub_id,
                record["envelope"]["type"],
            )
    # The correction and the annulment say what they change.
    nav = [d["event"] for d in deliveries if d["subscription"] == "nasjonal-nav" and d["person"] == A]
    assert [(e["changekind"], e.get("correctseventid")) for e in nav[3:5]] == [
        ("correction", events[5]["envelope"]["id"]),
        ("annulment", events[2]["envelope"]["id"]),
    ]

    # Leak scan. The hidden street and Trondheim's kommunenummer occur only in events after the protection,
    # so they must appear nowhere the bus wrote, nor in its log; identity numbers only where granted.
    secrets = [HIDDEN_STREET, f'"{TRONDHEIM}"']
    scanned = 0
    for topic in await _topics_of(kafka_bootstrap, bus_env["SAMBAND_APP_ID"]):
        if topic in (bus.ingest, bus.events):
            continue  # the input and the canonical stream hold source data by design: nothing leaves from them
        for record in await read_to_end(kafka_bootstrap, topic):
            scanned += 1
            text = (record.value or b"").decode("utf-8", "replace") + repr(record.headers)
            assert not [s for s in secrets if s in text], f"protected address data on {topic}"
            if topic == bus.deliveries and not _granted_person(json.loads(record.value)):
                assert A_NUMBER not in text and B_NUMBER not in text, f"identity number on {topic}"
    assert scanned > len(deliveries)  # the tables' changelogs were scanned too
    log = worker.log_path.read_text()
    assert not [s for s in [*secrets, A_NUMBER, B_NUMBER] if s in log], "personal data in the worker log"


def _protection_event_id(events: list[dict]) -> str:
    return next(r["envelope"]["id"] for r in events if r["envelope"]["type"].endswith("AddressProtectionChange"))


def _granted_person(delivery: dict) -> bool:
    """Subscriptions granted envelope.person get the identity number in data, by their legal basis."""
    return "person" in delivery["event"]["data"].get("envelope", {})
