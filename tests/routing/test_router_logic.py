"""Routing decisions without Kafka: index, predicates, projection, protection, corrections."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError
from routing_events import address, event, synthetic_number
from subscription_factory import subscription

from agents.routing.index import RoutingIndex
from agents.routing.router import PURGE_TYPE, PersonState, Router
from agents.subscriptions.model import Subscription

CHILD = synthetic_number(5, 6, 22, 300)  # born 2022
ADULT = synthetic_number(5, 6, 71, 300)  # born 1971
PERSON = "p" * 32  # a pseudonym
OSLO, BERGEN, TROMSO = "0301", "4601", "5501"
MOVE_FIELDS = ["envelope.person", "envelope.kommunenummer", "movedDate", "newAddress", "scope"]


def _router(*subs) -> Router:
    index = RoutingIndex()
    for sub in subs:
        index.put(sub)
    return Router(index)


def _move(person: str, old: str, new: str, **envelope) -> dict:
    scope = "withinKommune" if old == new else "betweenKommuner"
    return event(
        "Move",
        person,
        sorted({old, new}),
        previousAddress=address(old, "Gammel", 1),
        newAddress=address(new, "Ny", 2),
        scope=scope,
        envelope=envelope,
    )


def _data(result) -> dict[str, dict]:
    return {d.subscription: json.loads(d.value)["event"]["data"] for d in result.deliveries}


def _received(result) -> dict[str, str]:
    return {d.subscription: json.loads(d.value)["kind"] for d in result.deliveries}


def test_a_move_concerns_the_old_and_the_new_kommune_and_nobody_else():
    router = _router(
        *(subscription(f"skole-{k}", [k], ["Move"], {"Move": MOVE_FIELDS}) for k in (OSLO, BERGEN, TROMSO))
    )
    result = router.route("Move", _move(ADULT, OSLO, BERGEN), PERSON, PersonState(), None)
    assert sorted(result.recipients) == [f"skole-{OSLO}", f"skole-{BERGEN}"]


def test_the_cost_of_a_lookup_does_not_depend_on_unrelated_subscriptions():
    index = RoutingIndex()
    for n in range(2000):
        index.put(subscription(f"bib-{n}", [TROMSO], ["Death"], {"Death": ["deathDate"]}))
    index.put(subscription("bib-oslo", [OSLO], ["Death"], {"Death": ["deathDate"]}))
    assert [e.id for e in index.candidates("Death", [OSLO])] == ["bib-oslo"]
    index.remove("bib-oslo")
    assert index.candidates("Death", [OSLO]) == []


def test_delivery_record_is_exactly_the_json_of_its_parts_whatever_characters_the_event_carries():
    # The router writes each delivery record from pieces made once per event; quotes, percent
    # signs, backslashes and non-ASCII in the event must come out as JSON of the same values.
    router = _router(
        subscription("hs-a", "all", ["Move"], {"Move": ["movedDate", "envelope.correlationId"]}),
        subscription("hs-b", [BERGEN], ["Move"], {"Move": ["scope"]}),
    )
    odd = 'quote " percent %s %% backslash \\ æøå'
    record = _move(
        ADULT,
        OSLO,
        BERGEN,
        id=f"id-{odd}",
        source=f"urn:x:{odd}",
        correlationId=odd,
        time=datetime(2024, 3, 1, 8, 30, 0, 123000, tzinfo=UTC),
    )
    result = router.route("Move", record, PERSON, PersonState(), None)
    envelope = record["envelope"]
    common = {
        "specversion": "1.0",
        "id": envelope["id"],
        "source": envelope["source"],
        "type": envelope["type"],
        "time": "2024-03-01T08:30:00.123000+00:00",
        "subject": PERSON,
        "datacontenttype": "application/json",
        "dataschema": router._dataschema["Move"],
        "changekind": "new",
    }
    assert {d.subscription: json.loads(d.value) for d in result.deliveries} == {
        "hs-a": {
            "idempotency_key": f"{envelope['id']}.hs-a",
            "subscription": "hs-a",
            "person": PERSON,
            "kind": "event",
            "event": {
                **common,
                "data": {"envelope": {"correlationId": odd}, "movedDate": record["movedDate"].isoformat()},
            },
        },
        "hs-b": {
            "idempotency_key": f"{envelope['id']}.hs-b",
            "subscription": "hs-b",
            "person": PERSON,
            "kind": "event",
            "event": {**common, "data": {"scope": "betweenKommuner"}},
        },
    }


def test_delivery_record_carries_only_the_granted_fields_and_a_stable_idempotency_key():
    router = _router(subscription("hs", [BERGEN], ["Move"], {"Move": ["movedDate", "scope"]}))
    record = _move(ADULT, OSLO, BERGEN)
    delivery = router.route("Move", record, PERSON, PersonState(), None).deliveries[0]
    body = json.loads(delivery.value)
    assert body["idempotency_key"] == f"{record['envelope']['id']}.hs"
    assert delivery.key == f"hs/{PERSON}".encode()
    assert body["event"]["subject"] == PERSON and body["kind"] == "event"
    assert body["event"]["data"] == {"movedDate": record["movedDate"].isoformat(), "scope": "betweenKommuner"}
    assert ADULT not in delivery.value.decode()


def test_age_predicate_uses_the_birth_date_seen_or_read_from_the_number():
    router = _router(
        subscription(
            "barnehage",
            [OSLO],
            ["Move"],
            {"Move": ["movedDate"]},
            predicates={"age_at_event": {"min_years": 0, "max_years": 5}},
        )
    )
    at = {"time": datetime(2024, 3, 1, tzinfo=UTC)}
    assert router.route("Move", _move(CHILD, OSLO, OSLO, **at), PERSON, PersonState(), None).recipients == ["barnehage"]
    assert router.route("Move", _move(ADULT, OSLO, OSLO, **at), PERSON, PersonState(), None).recipients == []
    # A Birth seen on the bus wins over the number: this "adult" number was born in 2023 here.
    born = PersonState(birth_date=date(2023, 1, 1))
    assert router.route("Move", _move(ADULT, OSLO, OSLO, **at), PERSON, born, None).recipients == ["barnehage"]


@pytest.mark.parametrize(
    "old, new, expected", [(OSLO, BERGEN, ["inn"]), (BERGEN, OSLO, ["ut"]), (BERGEN, BERGEN, ["internt"])]
)
def test_move_scope_predicate_is_relative_to_the_subscriptions_kommune(old, new, expected):
    subs = [
        subscription(name, [BERGEN], ["Move"], {"Move": ["scope"]}, predicates={"move_scope": [scope]})
        for name, scope in (("inn", "into"), ("ut", "outOf"), ("internt", "within"))
    ]
    assert _router(*subs).route("Move", _move(ADULT, old, new), PERSON, PersonState(), None).recipients == expected


def test_change_kind_predicate():
    router = _router(
        subscription("bare-nye", [OSLO], ["Death"], {"Death": ["deathDate"]}, predicates={"change_kind": ["new"]})
    )
    correction = event("Death", ADULT, [OSLO], envelope={"changeKind": "correction", "correctsEventId": "e1"})
    assert router.route("Death", correction, PERSON, PersonState(), ["bare-nye"]).recipients == []


def test_fortrolig_address_goes_only_to_public_bodies_and_a_private_party_only_through_all_kommuner():
    fields = {"Move": MOVE_FIELDS}
    router = _router(
        subscription("kommunal", [BERGEN], ["Move"], fields),
        subscription("privat", [BERGEN], ["Move"], fields, public_body=False),
        subscription("privat-alle", "all", ["Move"], fields, public_body=False),
    )
    record = _move(ADULT, OSLO, BERGEN, addressProtection="fortrolig")
    data = _data(router.route("Move", record, PERSON, PersonState(), None))
    assert data["kommunal"]["newAddress"]["kommunenummer"] == BERGEN
    assert "privat" not in data  # its arrival alone would tell a private party the kommune (finding 3)
    assert set(data["privat-alle"]) == {"envelope", "movedDate", "scope"}
    assert data["privat-alle"]["envelope"] == {"person": ADULT}


def test_strengt_fortrolig_reaches_only_national_subscriptions_without_any_address():
    fields = {"Move": MOVE_FIELDS}
    router = _router(
        subscription("bergen", [BERGEN], ["Move"], fields), subscription("nasjonal", "all", ["Move"], fields)
    )
    record = _move(ADULT, OSLO, BERGEN)
    result = router.route("Move", record, PERSON, PersonState(protection="strengtFortrolig"), None)
    assert result.recipients == ["nasjonal"]
    text = result.deliveries[0].value.decode()
    for secret in (OSLO, BERGEN, "Gammel", 'Ny"'):
        assert secret not in text


def test_protection_change_purges_the_subscriptions_that_hold_data_before_anything_else():
    router = _router(
        subscription(
            "bergen",
            [BERGEN],
            ["Move", "AddressProtectionChange"],
            {"Move": MOVE_FIELDS, "AddressProtectionChange": ["envelope.id"]},
        ),
        subscription("privat", [BERGEN], ["Move"], {"Move": MOVE_FIELDS}, public_body=False),
        subscription("aldri", [TROMSO], ["Move"], {"Move": MOVE_FIELDS}),
    )
    state = PersonState(received=frozenset({"bergen", "privat"}))
    change = event("AddressProtectionChange", ADULT, [BERGEN], protection="fortrolig")
    result = router.route("AddressProtectionChange", change, PERSON, state, None)
    assert [(d.subscription, json.loads(d.value)["kind"]) for d in result.deliveries] == [
        ("privat", "purge"),
        ("bergen", "event"),
    ]
    purge = json.loads(result.deliveries[0].value)
    assert purge["event"]["type"] == PURGE_TYPE
    assert purge["idempotency_key"] == f"{change['envelope']['id']}-purge.privat"
    assert result.state.protection == "fortrolig"

    strict = event("AddressProtectionChange", ADULT, [BERGEN], protection="strengtFortrolig")
    result = router.route("AddressProtectionChange", strict, PERSON, result.state, None)
    assert _received(result) == {"bergen": "purge"}  # privat has nothing left to delete; national only from now


def _purges(result) -> dict[str, dict]:
    return {d.subscription: json.loads(d.value)["event"] for d in result.deliveries if b'"kind":"purge"' in d.value}


def test_a_purge_names_the_protection_change_that_caused_it():
    router = _router(subscription("privat", [BERGEN], ["Move"], {"Move": MOVE_FIELDS}, public_body=False))
    change = event("AddressProtectionChange", ADULT, [BERGEN], protection="fortrolig")
    result = router.route("AddressProtectionChange", change, PERSON, PersonState(received=frozenset({"privat"})), None)
    purge = _purges(result)["privat"]
    assert purge["protectionchangeid"] == change["envelope"]["id"] and "protectionrevealedby" not in purge
    assert result.state.untied == frozenset()


def test_a_grade_revealed_by_a_move_purges_at_once_and_again_tied_to_the_change_when_it_comes():
    router = _router(
        subscription("privat", [BERGEN], ["Move"], {"Move": MOVE_FIELDS}, public_body=False),
        subscription("bergen", [BERGEN], ["Move"], {"Move": MOVE_FIELDS}),
    )
    state = PersonState(received=frozenset({"privat", "bergen"}))
    # The register stamps the person's grade on each event: this Move shows fortrolig before the change does.
    move = _move(ADULT, BERGEN, BERGEN, addressProtection="fortrolig")
    result = router.route("Move", move, PERSON, state, None)
    revealed = _purges(result)
    assert list(revealed) == ["privat"]  # the public body keeps the fortrolig address
    assert revealed["privat"]["protectionrevealedby"] == move["envelope"]["id"]
    assert "protectionchangeid" not in revealed["privat"]
    assert result.state.untied == {"privat"}
    # A state written and read back keeps it (the router's person state is a changelog).
    assert PersonState.from_json(result.state.to_json()) == result.state

    # A second reveal, strengt fortrolig, before the change: both purged subscriptions wait for it.
    stricter_move = _move(ADULT, BERGEN, BERGEN, addressProtection="strengtFortrolig")
    result = router.route("Move", stricter_move, PERSON, result.state, None)
    assert list(_purges(result)) == ["bergen"] and result.state.untied == {"privat", "bergen"}

    change = event("AddressProtectionChange", ADULT, [BERGEN], protection="strengtFortrolig")
    result = router.route("AddressProtectionChange", change, PERSON, result.state, None)
    tied = _purges(result)
    assert sorted(tied) == ["bergen", "privat"]
    assert {p["protectionchangeid"] for p in tied.values()} == {change["envelope"]["id"]}
    assert {p["id"] for p in tied.values()} == {change["envelope"]["id"] + "-purge"}
    assert result.state.untied == frozenset() and result.state.protection == "strengtFortrolig"
    # Once tied, a repeated change sends nothing more.
    again = event("AddressProtectionChange", ADULT, [BERGEN], protection="strengtFortrolig")
    assert _purges(router.route("AddressProtectionChange", again, PERSON, result.state, None)) == {}


def test_a_tied_purge_goes_only_to_subscriptions_purged_at_the_reveal_never_to_one_that_held_no_address():
    """Found in review: a subscription that first got data after the reveal (address withheld) got
    a purge at the change, telling it the person had just become protected."""
    router = _router(subscription("privat-nasjonal", "all", ["Move"], {"Move": MOVE_FIELDS}, public_body=False))
    revealing = _move(ADULT, BERGEN, BERGEN, addressProtection="fortrolig")
    result = router.route("Move", revealing, PERSON, PersonState(), None)
    assert _purges(result) == {} and result.state.received == {"privat-nasjonal"}
    assert "newAddress" not in _data(result)["privat-nasjonal"]
    change = event("AddressProtectionChange", ADULT, [BERGEN], protection="fortrolig")
    assert _purges(router.route("AddressProtectionChange", change, PERSON, result.state, None)) == {}


def test_a_change_stricter_than_the_revealed_grade_ties_the_earlier_purges_too():
    """Found in review: only the subscriptions that lost the address at the change's own step got
    a purge naming it; those purged at the reveal were left untied."""
    router = _router(
        subscription("privat", [BERGEN], ["Move"], {"Move": MOVE_FIELDS}, public_body=False),
        subscription("bergen", [BERGEN], ["Move"], {"Move": MOVE_FIELDS}),
    )
    state = PersonState(received=frozenset({"privat", "bergen"}))
    result = router.route("Move", _move(ADULT, BERGEN, BERGEN, addressProtection="fortrolig"), PERSON, state, None)
    assert list(_purges(result)) == ["privat"]
    change = event("AddressProtectionChange", ADULT, [BERGEN], protection="strengtFortrolig")
    tied = _purges(router.route("AddressProtectionChange", change, PERSON, result.state, None))
    assert sorted(tied) == ["bergen", "privat"]
    assert {p["protectionchangeid"] for p in tied.values()} == {change["envelope"]["id"]}


def test_an_event_waiting_in_the_pipeline_gets_the_newer_protection():
    router = _router(subscription("nasjonal", "all", ["Move"], {"Move": MOVE_FIELDS}))
    stale = _move(ADULT, OSLO, BERGEN, addressProtection="ugradert")
    data = _data(router.route("Move", stale, PERSON, PersonState(protection="strengtFortroligUtland"), None))
    assert "newAddress" not in data["nasjonal"] and "kommunenummer" not in data["nasjonal"]["envelope"]


def test_corrections_go_exactly_to_the_recipients_of_the_original():
    fields = {"Death": ["deathDate"]}
    router = _router(
        subscription("a", [OSLO], ["Death"], fields),
        subscription("b", [OSLO], ["Death"], fields),
        subscription("c", "all", ["Death"], fields),
    )
    correction = event("Death", ADULT, [OSLO], envelope={"changeKind": "correction", "correctsEventId": "original"})
    assert router.route("Death", correction, PERSON, PersonState(), ["a", "gone"]).recipients == ["a"]
    assert router.route("Death", correction, PERSON, PersonState(), None).unknown_original


def test_subscription_validation_names_the_problem():
    valid = json.loads(subscription("x", [OSLO], ["Death"], {"Death": ["deathDate"]}).to_json())
    with pytest.raises(ValidationError, match="legal_basis"):
        Subscription.model_validate({**valid, "legal_basis": " "})
    with pytest.raises(ValidationError, match="no such field"):
        subscription("x", [OSLO], ["Death"], {"Death": ["deathPlace"]})
    with pytest.raises(ValidationError, match="confidential"):
        subscription("x", [OSLO], ["Birth"], {"Birth": ["parents"]}, public_body=False)
    with pytest.raises(ValidationError, match="9999"):
        subscription("x", ["9999"], ["Death"], {"Death": ["deathDate"]})
    with pytest.raises(ValidationError, match="missing"):
        subscription("x", [OSLO], ["Death", "Move"], {"Death": ["deathDate"]})


def test_a_backfill_routes_an_old_event_under_the_persons_grade_now_and_says_it_is_a_backfill():
    sub = subscription("late", "all", ["Move"], {"Move": MOVE_FIELDS})
    index = RoutingIndex()
    index.put(sub)
    old_move = _move(ADULT, OSLO, BERGEN)  # sent when the person had no protection
    result = Router(index, backfill=True).route(
        "Move", old_move, PERSON, PersonState(), None, at_least="strengtFortrolig"
    )
    [delivery] = result.deliveries
    event = json.loads(delivery.value)["event"]
    assert event["backfill"] == "true"
    assert "newAddress" not in event["data"]
    assert "kommunenummer" not in event["data"].get("envelope", {})
    live = Router(index).route("Move", old_move, PERSON, PersonState(), None)
    assert "backfill" not in json.loads(live.deliveries[0].value)["event"]
    assert "newAddress" in json.loads(live.deliveries[0].value)["event"]["data"]
