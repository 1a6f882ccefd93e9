"""Whatever leaves the bus obeys the person's protection grade at the moment it leaves (issue 13,
findings 2, 3 and 10), through a whole worker, real receivers and the CLI:
- a Move dead-lettered before the person became strengt fortrolig, replayed after the purge,
  arrives without address, kommunenummer, kommune-naming fields or a kommune in `source`;
- a strengt fortrolig person's events carry no kommune anywhere;
- each subscription sees its own pseudonym of the person as `subject`."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

import pytest
from bus_settings import PSEUDONYM_KEY
from kafka_io import produce, read_to_end
from ops_bus import full_subscription, operations_bus
from routing_events import address, encode, event, synthetic_number
from samband_cli import samband
from webhook_receiver import Receiver, Reply

from agents.subscriptions.windows import NORWAY
from schemas.pseudonym import pseudonym

PERSON = synthetic_number(9, 9, 81, 520)
OTHER = synthetic_number(10, 10, 82, 530)
STREET = "Hemmeliggata"
MOVE_FIELDS = [
    "envelope.person",
    "envelope.kommunenummer",
    "envelope.source",
    "movedDate",
    "newAddress",
    "previousAddress",
    "scope",
    "cause",
]
FAST = {"retry_schedule": [], "read_timeout": 2.0, "connect_timeout": 1.0}
PURGE = "no.samband.purge"
KOMMUNE_WORDS = ("4601", "0301", STREET, "Gammelveien", "urn:no:kommune")


@pytest.fixture(scope="module")
async def egress_bus(kafka_bootstrap, tmp_path_factory):
    async with operations_bus(kafka_bootstrap, tmp_path_factory.mktemp("egress-bus")) as bus:
        yield bus


def _move(person: str, street: str) -> dict:
    record = event(
        "Move",
        person,
        ["0301", "4601"],
        previousAddress=address("0301", "Gammelveien", 1),
        newAddress=address("4601", street, 7),
        scope="betweenKommuner",
        cause="relocation",
    )
    record["envelope"]["source"] = "urn:no:kommune:4601:folkeregister-kopi"
    return record


async def _send(bus, *records: dict) -> None:
    keys = [pseudonym(r["envelope"]["person"], PSEUDONYM_KEY.encode()).encode() for r in records]
    await produce(bus.bootstrap, bus.topic("ingest"), [encode(r) for r in records], keys)


async def _subscribe(bus, sub_id: str, receiver: Receiver, paused: bool = False) -> None:
    value = full_subscription(
        sub_id,
        receiver.url,
        "all",
        ["Move", "AddressProtectionChange"],
        {"Move": MOVE_FIELDS, "AddressProtectionChange": ["protection"]},
        **FAST,
        paused=paused,
    )
    await bus.put_subscription(value)
    await bus.wait_for(receiver, receiver.verified, 60, f"{sub_id} verified")


async def test_a_move_replayed_after_the_purge_arrives_without_anything_that_reveals_the_address(egress_bus):
    refusing = []
    receiver = Receiver(
        egress_bus.secret, lambda _n, e: Reply(400) if e["type"].endswith(".Move") and not refusing else Reply()
    )
    await receiver.start()
    try:
        await _subscribe(egress_bus, "egress-replay", receiver)
        move = _move(PERSON, STREET)
        await _send(egress_bus, move)
        listed = None
        for _ in range(300):  # the rejected Move becomes a dead letter
            listed = await samband(
                egress_bus.bootstrap,
                "dlq",
                "list",
                "--subscription",
                "egress-replay",
                env={"SAMBAND_APP_ID": egress_bus.app_id},
            )
            if move["envelope"]["id"] in listed.stdout:
                break
        rows = [line for line in listed.stdout.splitlines() if move["envelope"]["id"] in line]
        assert rows, listed.stdout
        protect = event("AddressProtectionChange", PERSON, ["4601"], protection="strengtFortrolig")
        await _send(egress_bus, protect)
        await egress_bus.wait_for(
            receiver, lambda: any(r.event["type"] == "no.samband.purge" for r in receiver.events()), 60, "the purge"
        )
        refusing.append(True)
        replayed = await samband(
            egress_bus.bootstrap, "dlq", "replay", rows[0].split()[0], env={"SAMBAND_APP_ID": egress_bus.app_id}
        )
        assert replayed.code == 0, replayed.stderr
        await egress_bus.wait_for(
            receiver,
            lambda: any(r.event["id"] == move["envelope"]["id"] for r in receiver.events()),
            60,
            "the replayed Move",
        )
    finally:
        await receiver.stop()
    [arrived] = [r for r in receiver.events() if r.event["id"] == move["envelope"]["id"]]
    body = json.dumps({"source": arrived.event["source"], "data": arrived.event.get_data()}, ensure_ascii=False)
    for word in KOMMUNE_WORDS:
        assert word not in body, f"{word!r} left the bus after the purge: {body}"
    assert arrived.event.get_data()["movedDate"]  # the event itself still arrives
    # What the replay wrote back into the bus was projected too: no address waits in the deliveries topic.
    written = [
        r
        for r in await read_to_end(egress_bus.bootstrap, egress_bus.topic("deliveries"))
        if "samband-replay-of" in dict(r.headers or ())
    ]
    assert len(written) == 1
    for word in KOMMUNE_WORDS:
        assert word.encode() not in written[0].value, f"{word!r} was replayed into the deliveries topic"


async def test_a_held_delivery_leaves_on_resume_after_the_purge_and_without_the_address(egress_bus):
    person = synthetic_number(11, 11, 83, 540)
    held, witness = Receiver(egress_bus.secret), Receiver(egress_bus.secret)
    for receiver in (held, witness):
        await receiver.start()
    env = {"SAMBAND_APP_ID": egress_bus.app_id}
    try:
        # "egress-held" sorts before "egress-witness": the router writes its purge first.
        await _subscribe(egress_bus, "egress-held", held, paused=True)
        await _subscribe(egress_bus, "egress-witness", witness)
        move = _move(person, STREET)
        await _send(egress_bus, move, event("AddressProtectionChange", person, ["4601"], protection="strengtFortrolig"))
        await egress_bus.wait_for(
            witness, lambda: any(r.event["type"] == PURGE for r in witness.events()), 60, "the witness's purge"
        )
        assert held.events() == []  # paused: the Move and the purge wait
        resumed = await samband(egress_bus.bootstrap, "subscriptions", "resume", "egress-held", env=env)
        assert resumed.code == 0, resumed.stderr
        await egress_bus.wait_for(held, lambda: len(held.events()) >= 2, 60, "the held purge and Move")
    finally:
        await held.stop()
        await witness.stop()
    assert [r.event["type"] for r in held.events()][:2] == [PURGE, move["envelope"]["type"]]  # the purge first
    arrived = held.events()[1]
    body = json.dumps({"source": arrived.event["source"], "data": arrived.event.get_data()}, ensure_ascii=False)
    for word in KOMMUNE_WORDS:
        assert word not in body, f"{word!r} left the bus on resume: {body}"


async def test_each_subscription_sees_its_own_subject_for_the_same_person(egress_bus):
    receivers = [Receiver(egress_bus.secret), Receiver(egress_bus.secret)]
    for n, receiver in enumerate(receivers):
        await receiver.start()
        await _subscribe(egress_bus, f"egress-subject-{n}", receiver)
    try:
        moves = [_move(OTHER, "Åpengata"), _move(OTHER, "Åpengata")]
        await _send(egress_bus, *moves)
        for receiver in receivers:
            await egress_bus.wait_for(
                receiver,
                lambda r=receiver: len([e for e in r.events() if e.event["type"].endswith(".Move")]) == 2,
                60,
                "both Moves",
            )
    finally:
        for receiver in receivers:
            await receiver.stop()
    subjects = [
        {r.event["subject"] for r in receiver.events() if r.event["type"].endswith(".Move")} for receiver in receivers
    ]
    assert all(len(s) == 1 for s in subjects), subjects  # stable for a subscription
    assert subjects[0] != subjects[1]  # unlinkable across subscriptions
    internal = pseudonym(OTHER, PSEUDONYM_KEY.encode())
    assert internal not in subjects[0] | subjects[1]


async def test_a_purge_names_the_protection_change_even_when_a_move_revealed_the_grade_first(egress_bus):
    """Issue 18: a subscriber ties each purge to the AddressProtectionChange (extension attribute
    `protectionchangeid`). When a Move stamped with the new grade comes first, its purge goes at
    once (naming the Move in `protectionrevealedby`), and the change's own purge follows it."""
    told, revealed = synthetic_number(12, 12, 84, 550), synthetic_number(13, 12, 84, 560)
    receiver = Receiver(egress_bus.secret)
    await receiver.start()
    try:
        await _subscribe(egress_bus, "egress-cause", receiver)
        for person in (told, revealed):
            await _send(egress_bus, _move(person, "Åpengata"))
        await egress_bus.wait_for(
            receiver, lambda: len([r for r in receiver.events() if r.event["type"].endswith(".Move")]) == 2, 60, "Moves"
        )
        change = event("AddressProtectionChange", told, ["4601"], protection="strengtFortrolig")
        stamped = _move(revealed, STREET)
        stamped["envelope"]["addressProtection"] = "strengtFortrolig"
        later_change = event("AddressProtectionChange", revealed, ["4601"], protection="strengtFortrolig")
        await _send(egress_bus, change, stamped, later_change)
        await egress_bus.wait_for(
            receiver, lambda: len([r for r in receiver.events() if r.event["type"] == PURGE]) == 3, 60, "3 purges"
        )
    finally:
        await receiver.stop()
    purges = [r.event for r in receiver.events() if r.event["type"] == PURGE]
    by_cause = {(p.get("protectionchangeid"), p.get("protectionrevealedby")): p for p in purges}
    assert set(by_cause) == {
        (change["envelope"]["id"], None),
        (None, stamped["envelope"]["id"]),
        (later_change["envelope"]["id"], None),
    }
    assert by_cause[(later_change["envelope"]["id"], None)]["id"] == later_change["envelope"]["id"] + "-purge"


async def test_deliveries_outside_the_window_wait_in_order_and_leave_when_it_opens_purge_first(egress_bus):
    """Issue 19, delivery windows: held outside the window (status says until when), out when it
    opens, the purge first and the Move under the grade at that moment."""
    person = synthetic_number(14, 12, 85, 570)
    now = datetime.now(NORWAY)
    closed = {
        "start": (now + timedelta(hours=6)).strftime("%H:%M"),
        "end": (now + timedelta(hours=7)).strftime("%H:%M"),
    }
    receiver = Receiver(egress_bus.secret)
    await receiver.start()
    env = {"SAMBAND_APP_ID": egress_bus.app_id}

    def subscription(window: dict) -> dict:
        return full_subscription(
            "egress-window", receiver.url, "all", ["Move", "AddressProtectionChange"],
            {"Move": MOVE_FIELDS, "AddressProtectionChange": ["protection"]}, **FAST, windows=[window],
        )  # fmt: skip

    try:
        await egress_bus.put_subscription(subscription(closed))  # opens in six hours
        await egress_bus.wait_for(receiver, receiver.verified, 60, "egress-window verified")
        move = _move(person, STREET)
        await _send(egress_bus, move, event("AddressProtectionChange", person, ["4601"], protection="strengtFortrolig"))
        status = None
        async with asyncio.timeout(60):
            while status is None or status["pending"] < 3:  # the Move, the purge and the change wait
                done = await samband(egress_bus.bootstrap, "status", "--json", env=env)
                status = next(r for r in done.json()["subscriptions"] if r["id"] == "egress-window")
        assert status["state"] == "outside_window", status
        assert (
            status["window_opens"][:16]
            == datetime.combine(
                (now + timedelta(hours=6)).date(), datetime.strptime(closed["start"], "%H:%M").time()
            ).isoformat()[:16]
        )
        assert receiver.events() == []  # nothing left while closed
        opens = datetime.now(NORWAY) + timedelta(seconds=3)  # now the window opens in a few seconds
        await egress_bus.put_subscription(subscription({"start": opens.strftime("%H:%M:%S"), "end": closed["end"]}))
        await egress_bus.wait_for(receiver, lambda: len(receiver.events()) >= 3, 60, "the held deliveries")
    finally:
        await receiver.stop()
    types = [r.event["type"] for r in receiver.events()]
    assert types[0] == PURGE and types.index(move["envelope"]["type"]) > 0, types
    arrived = next(r for r in receiver.events() if r.event["id"] == move["envelope"]["id"])
    body = json.dumps({"source": arrived.event["source"], "data": arrived.event.get_data()}, ensure_ascii=False)
    for word in KOMMUNE_WORDS:
        assert word not in body, f"{word!r} left the bus when the window opened: {body}"
