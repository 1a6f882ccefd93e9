"""Backfill (issue 17, item 4), through a whole worker, real receivers and the CLI: a subscription
made after events went by gets them, from a date, marked as a backfill, in order per person, while
live events keep flowing; a person who is strengt fortrolig now gets no address in any backfilled
event, though the events were sent with one; the progress shows in `samband status`."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import pytest
from bus_settings import PSEUDONYM_KEY
from kafka_io import event_id, produce, read_to_end
from ops_bus import READ_ONLY_TOKEN, full_subscription, operations_bus
from routing_events import address, encode, event, synthetic_number
from samband_cli import samband
from webhook_receiver import Receiver

from schemas.pseudonym import pseudonym

PERSONS, MOVES = 6, 5
STREET = "Storgata"
HIDDEN = "Hemmeliggata"  # the street of the person who is strengt fortrolig now
MOVE_FIELDS = ["envelope.person", "movedDate", "newAddress", "previousAddress", "scope"]
FAST = {"retry_schedule": [], "read_timeout": 2.0, "connect_timeout": 1.0}
TODAY = datetime.now(UTC).date().isoformat()
PURGE = "no.samband.purge"


OPERATOR_TOKEN = "test-token-operator"


@pytest.fixture(scope="module")
async def bus(kafka_bootstrap, tmp_path_factory):
    tokens = (
        f"{OPERATOR_TOKEN}=subscriptions:operator+subscriptions:read+operations:read,"
        f"{READ_ONLY_TOKEN}=subscriptions:read"
    )
    async with operations_bus(
        kafka_bootstrap, tmp_path_factory.mktemp("backfill-bus"), {"SAMBAND_API_TOKENS": tokens}
    ) as bus:
        yield bus


def _moves(wave: str, person: str, count: int = MOVES, street: str = STREET) -> list[dict]:
    moves = []
    for n in range(count):
        record = event(
            "Move",
            person,
            ["0301", "4601"],
            previousAddress=address("0301", "Gammelveien", n + 1),
            newAddress=address("4601", street, n + 1),
            scope="betweenKommuner",
        )
        record["envelope"]["id"] = f"{wave}-{person[-5:]}-{n}"
        moves.append(record)
    return moves


async def _send(bus, records: list[dict]) -> None:
    keys = [pseudonym(r["envelope"]["person"], PSEUDONYM_KEY.encode()).encode() for r in records]
    await produce(bus.bootstrap, bus.topic("ingest"), [encode(r) for r in records], keys)


async def _subscribe(bus, sub_id: str, receiver: Receiver) -> None:
    fields = {"Move": MOVE_FIELDS, "AddressProtectionChange": ["protection"]}
    await bus.put_subscription(
        full_subscription(sub_id, receiver.url, "all", ["Move", "AddressProtectionChange"], fields, **FAST)
    )
    await bus.wait_for(receiver, receiver.verified, 60, f"{sub_id} verified")


def _cli(bus, *args: str, timeout: float = 60.0):
    return samband(bus.bootstrap, *args, env={"SAMBAND_APP_ID": bus.app_id}, timeout=timeout)


def _ids(receiver: Receiver, wave: str) -> list[str]:
    return [r.event["id"] for r in receiver.events() if r.event["id"].startswith(f"{wave}-")]


async def test_a_late_subscription_gets_what_it_missed_marked_as_backfill_while_live_events_flow(bus):
    live, late = Receiver(bus.secret), Receiver(bus.secret)
    for receiver in (live, late):
        await receiver.start()
    try:
        await _subscribe(bus, "backfill-live", live)
        persons = [synthetic_number(1 + p, 2, 80, 400 + p) for p in range(PERSONS)]
        before = [m for p in persons for m in _moves("before", p)]
        await _send(bus, before)
        await bus.wait_for(live, lambda: len(_ids(live, "before")) == len(before), 60, "the live subscriber's events")

        await _subscribe(bus, "backfill-late", late)
        asked = asyncio.ensure_future(_cli(bus, "subscriptions", "backfill", "backfill-late", "--since", TODAY))
        after = [m for p in persons[1:] for m in _moves("after", p, 2)]  # the first person: none
        await _send(bus, after)
        result = await asked
        assert result.code == 0, result.stderr
        assert "backfill of backfill-late done" in result.stdout
        await bus.wait_for(
            late,
            lambda: {*_ids(late, "before"), *_ids(late, "after")} >= {m["envelope"]["id"] for m in before + after},
            60,
            "the late subscriber's events",
        )
        # The first person becomes strengt fortrolig: the subscription that got their address
        # only through the backfill (no live event of theirs came after it subscribed) is told to
        # delete it, as one that got it live is.
        await _send(bus, [event("AddressProtectionChange", persons[0], ["4601"], protection="strengtFortrolig")])
        for receiver in (live, late):
            await bus.wait_for(
                receiver, lambda r=receiver: any(e.event["type"] == PURGE for e in r.events()), 60, "the purge"
            )
    finally:
        for receiver in (live, late):
            await receiver.stop()

    backfilled = [r for r in late.events() if r.event["id"].startswith("before-")]
    assert all(r.event["backfill"] == "true" for r in backfilled)
    # Sent after the backfill was asked for: routed live, and not again by the backfill.
    after_ids = {m["envelope"]["id"] for m in after}
    assert {r.event["id"] for r in late.events() if "backfill" not in r.event} >= after_ids
    assert not [r for r in late.events() if "backfill" in r.event and r.event["id"] in after_ids]
    assert all("backfill" not in r.event for r in live.events()), "a backfill is for its subscription alone"
    for person in persons:  # first arrivals of each person's backfilled moves, in the order sent
        sent = [m["envelope"]["id"] for m in before if m["envelope"]["person"] == person]
        got = list(dict.fromkeys(i for i in _ids(late, "before") if i in sent))
        assert got == sent, (got, sent)

    status = await _cli(bus, "status", "--json")
    [row] = [b for b in status.json()["backfills"] if b["subscription"] == "backfill-late"]
    assert row["done"] and row["since"] == TODAY and row["routed"] == row["total"] >= len(before)
    audit = await _cli(bus, "audit", "--json")
    assert '"action": "backfill"' in audit.stdout and '"detail": "since ' + TODAY in audit.stdout
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{bus.web_url}/api/overview", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}) as response,
    ):
        overview = await response.json()
    [shown] = [b for b in overview["backfills"] if b["subscription"] == "backfill-late"]  # the dashboard's table
    assert shown["done"] and shown["routed"] == row["routed"]


async def test_a_person_who_is_strengt_fortrolig_now_gets_no_address_in_any_backfilled_event(bus):
    receiver, observer = Receiver(bus.secret), Receiver(bus.secret)
    for started in (receiver, observer):
        await started.start()
    try:
        await _subscribe(bus, "backfill-observer", observer)
        person = synthetic_number(12, 3, 79, 610)
        moves = _moves("protected", person, 3, street=HIDDEN)
        protect = event("AddressProtectionChange", person, ["4601"], protection="strengtFortrolig")
        await _send(bus, [*moves, protect])
        # Routed, in the person's order: the moves went by before the new subscription existed.
        await bus.wait_for(
            observer, lambda: protect["envelope"]["id"] in {r.event["id"] for r in observer.events()}, 60, "routed"
        )
        await _subscribe(bus, "backfill-protected", receiver)
        result = await _cli(bus, "subscriptions", "backfill", "backfill-protected", "--since", TODAY)
        assert result.code == 0, result.stderr
        await bus.wait_for(receiver, lambda: len(_ids(receiver, "protected")) == len(moves), 60, "the moves")
    finally:
        for started in (receiver, observer):
            await started.stop()
    # (The subscription is national: the other test's persons' moves, with their addresses, come too.)
    assert not [r.body for r in receiver.received if HIDDEN.encode() in r.body]
    for received in receiver.events():
        if received.event["id"].startswith("protected-"):
            assert received.event["backfill"] == "true"
            assert "newAddress" not in received.event.get_data() and "previousAddress" not in received.event.get_data()
            assert b"4601" not in received.body and b"0301" not in received.body


async def test_backfill_refuses_what_it_cannot_do_in_the_operators_words(bus):
    missing = await _cli(bus, "subscriptions", "backfill", "no-such-subscription", "--since", TODAY)
    assert (missing.code, missing.stderr.strip()) == (1, "samband: no subscription no-such-subscription")
    future = await _cli(bus, "subscriptions", "backfill", "backfill-live", "--since", "2999-01-01")
    assert future.code == 2 and "is in the future" in future.stderr
    neither = await _cli(bus, "subscriptions", "backfill", "backfill-live")
    assert neither.code == 2 and "either --since DATE or --cancel" in neither.stderr
    bad = await _cli(bus, "subscriptions", "backfill", "backfill-live", "--since", "yesterday")
    assert bad.code == 2 and "not a date (YYYY-MM-DD): 'yesterday'" in bad.stderr


async def test_the_api_asks_for_a_backfill_with_the_operator_scope_shows_its_progress_and_cancels_it(bus):
    receiver = Receiver(bus.secret)
    await receiver.start()
    url = f"{bus.web_url}/subscriptions/backfill-api/backfill"
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    try:
        moves = _moves("api", synthetic_number(14, 4, 77, 620), 2)
        await _send(bus, moves)
        deadline = time.monotonic() + 60
        while {m["envelope"]["id"] for m in moves} - {
            event_id(r) for r in await read_to_end(bus.bootstrap, bus.topic("events"))
        }:
            assert time.monotonic() < deadline, "the moves reached the events topic"
            await asyncio.sleep(0.2)  # poll interval inside the deadline
        await _subscribe(bus, "backfill-api", receiver)
        async with aiohttp.ClientSession() as http:
            reader = {"Authorization": f"Bearer {READ_ONLY_TOKEN}"}
            async with http.post(url, json={"since": TODAY}, headers=reader) as response:
                assert (response.status, (await response.json())["error"]) == (403, "auth.scope_missing")
            async with http.post(url, json={"since": "soon"}, headers=operator) as response:
                assert (response.status, (await response.json())["error"]) == (422, "backfill.invalid")
            missing = f"{bus.web_url}/subscriptions/no-such-one/backfill"
            async with http.post(missing, json={"since": TODAY}, headers=operator) as response:
                assert (response.status, (await response.json())["error"]) == (404, "subscription.not_found")
            async with http.post(url, json={"since": TODAY}, headers=operator) as response:
                assert response.status == 202, await response.text()
                asked = await response.json()
            assert (asked["subscription"], asked["since"][:10], asked["requested_by"]) == (
                "backfill-api",
                TODAY,
                "SAMBAND_API_TOKENS#1",
            )
            deadline = time.monotonic() + 60
            while True:
                async with http.get(url, headers=operator) as response:
                    progress = await response.json()
                if response.status == 200 and progress["done"]:
                    break
                assert time.monotonic() < deadline, progress
                await asyncio.sleep(0.2)  # poll interval inside the deadline
            assert progress["id"] == asked["id"] and progress["routed"] == progress["total"] >= len(moves)
            # (Routed live as well if the router read them after the subscription came: same key, twice.)
            await bus.wait_for(
                receiver,
                lambda: (
                    {r.event["id"] for r in receiver.events() if "backfill" in r.event}
                    >= {m["envelope"]["id"] for m in moves}
                ),
                60,
                "the backfilled moves",
            )
            async with http.delete(url, headers=operator) as response:
                assert response.status == 204
            async with http.get(url, headers=reader) as response:  # a token without a tenant owns none
                assert (response.status, (await response.json())["error"]) == (404, "subscription.not_found")
            async with http.get(url, headers=operator) as response:
                assert (response.status, (await response.json())["error"]) == (404, "backfill.not_found")
    finally:
        await receiver.stop()
    audit = await _cli(bus, "audit", "--json")
    assert '"action": "backfill-cancel"' in audit.stdout
