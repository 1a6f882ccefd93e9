"""The demo's leak check and delivery-gap count: clean input passes, every injected leak is caught."""

from __future__ import annotations

from pathlib import Path

from agents.demo.checks import PURGE_TYPE, Gap, Grant, Leak, ReceivedEvent, delivery_gaps, find_leaks
from agents.subscriptions.files import load_dir

SUBS, _ = load_dir(Path(__file__).resolve().parents[2] / "deploy" / "demo" / "subscriptions")
GRANTS = {s.id: Grant.of(s) for s in SUBS}
ADDRESS = {"adressenavn": "Syntetisk veg", "husnummer": 1, "postnummer": "0001", "poststed": "PRØVE", "kommunenummer": "0301"}


def _move(sub: str, event_id: str, **data) -> ReceivedEvent:
    return ReceivedEvent(sub, event_id, "Move", "a" * 32, {"envelope": {"person": "x"}, "movedDate": "2024-03-01", **data})


def test_granted_fields_for_an_unprotected_person_are_no_leak():
    received = [
        _move("eventyrhagen-barnehager", "e1", newAddress=ADDRESS),
        _move("bergen-helsestasjon", "e2", newAddress=ADDRESS, scope="betweenKommuner"),
        ReceivedEvent("alta-bibliotek", "e3", "Death", "b" * 32, {"envelope": {"person": "x"}, "deathDate": "2024-05-01"}),
        ReceivedEvent("barnevern-nasjonal", "e4-purge", PURGE_TYPE, "c" * 32, {"delete": "address"}),
    ]
    assert find_leaks(received, GRANTS, {"e1": "ugradert"}) == []


def test_a_field_the_subscription_does_not_grant_is_a_leak():
    received = [_move("alta-bibliotek", "e1", scope="betweenKommuner", newAddress=ADDRESS, previousAddress=ADDRESS)]
    assert find_leaks(received, GRANTS, {}) == [Leak("alta-bibliotek", "e1", "unauthorised_field", "previousAddress")]


def test_an_envelope_field_the_subscription_does_not_grant_is_a_leak():
    received = [_move("oslo-barnehage", "e1", newAddress=ADDRESS, scope="withinKommune")]
    received[0].data["envelope"]["addressProtection"] = "ugradert"
    assert find_leaks(received, GRANTS, {}) == [Leak("oslo-barnehage", "e1", "unauthorised_field", "envelope.addressProtection")]


def test_an_event_type_outside_the_subscription_is_a_leak():
    received = [ReceivedEvent("alta-bibliotek", "e1", "Birth", "a" * 32, {"birthDate": "2024-01-01"})]
    assert find_leaks(received, GRANTS, {}) == [Leak("alta-bibliotek", "e1", "unsubscribed_type", "Birth")]


def test_a_fortrolig_address_to_a_private_operator_is_a_leak_but_not_to_a_public_body():
    private = _move("eventyrhagen-barnehager", "e1", newAddress=ADDRESS)
    public = _move("oslo-barnehage", "e2", newAddress=ADDRESS, scope="withinKommune")
    protection = {"e1": "fortrolig", "e2": "fortrolig"}
    assert find_leaks([private, public], GRANTS, protection) == [
        Leak("eventyrhagen-barnehager", "e1", "protected_address", "newAddress")
    ]


def test_a_withheld_address_of_a_fortrolig_person_is_no_leak():
    withheld = _move("eventyrhagen-barnehager", "e1")
    assert find_leaks([withheld], GRANTS, {"e1": "fortrolig"}) == []


def test_strengt_fortrolig_addresses_and_kommune_scoped_deliveries_are_leaks():
    to_national = ReceivedEvent("barnevern-nasjonal", "e1", "Move", "a" * 32,
                                {"envelope": {"person": "x", "kommunenummer": ["0301"]}, "newAddress": ADDRESS})
    to_kommune = _move("oslo-barnehage", "e2", scope="withinKommune")
    leaks = find_leaks([to_national, to_kommune], GRANTS, {"e1": "strengtFortrolig", "e2": "strengtFortroligUtland"})
    assert leaks == [
        Leak("barnevern-nasjonal", "e1", "protected_address", "envelope.kommunenummer"),
        Leak("barnevern-nasjonal", "e1", "protected_address", "newAddress"),
        Leak("oslo-barnehage", "e2", "strict_person_in_kommune_scope"),
    ]


def test_a_strengt_fortrolig_event_without_address_to_a_national_system_is_no_leak():
    national = ReceivedEvent("barnevern-nasjonal", "e1", "Move", "a" * 32,
                             {"envelope": {"person": "x", "kommunenummer": [], "addressProtection": "strengtFortrolig"},
                              "movedDate": "2024-03-01"})
    assert find_leaks([national], GRANTS, {"e1": "strengtFortrolig"}) == []


def test_a_purge_carrying_more_than_the_delete_instruction_is_a_leak():
    purge = ReceivedEvent("barnevern-nasjonal", "e1-purge", PURGE_TYPE, "a" * 32, {"delete": "address", "newAddress": ADDRESS})
    assert find_leaks([purge], GRANTS, {}) == [Leak("barnevern-nasjonal", "e1-purge", "unauthorised_field", "newAddress")]


def test_delivery_gaps_separate_delivered_dead_lettered_pending_and_unexpected():
    routed = {"a": {"e1", "e2", "e3", "e4"}, "b": {"e5"}}
    delivered = {"a": {"e1", "e9"}, "b": {"e5"}}
    dead = {"a": {"e2"}}
    assert delivery_gaps(routed, delivered, dead) == {
        "a": Gap("a", routed=4, delivered=1, dead_lettered=1, pending=2, unexpected=1),
        "b": Gap("b", routed=1, delivered=1, dead_lettered=0, pending=0, unexpected=0),
    }
