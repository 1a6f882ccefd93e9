"""The privacy scan's rules for one delivery (agents/privacy_scan.py DeliveryScan), with the demo's
subscriptions: what a subscription may receive of a person under each protection grade.
The scan over real topics is tests/privacy/test_privacy_scan.py."""

from __future__ import annotations

from agents.demo.systems import load_subscriptions
from agents.privacy_scan import (
    IDENTITY_NUMBER,
    PROTECTED_ADDRESS,
    PROTECTED_KOMMUNE,
    UNGRANTED_FIELD,
    Bus,
    DeliveryScan,
    RoutedEvent,
    TextScan,
)
from schemas.identity import has_valid_control_digits

SUBS = load_subscriptions()  # as the demo's worker reads them
ADDRESS = {
    "streetName": "Syntetisk veg",
    "houseNumber": 1,
    "postalCode": "0001",
    "postalTown": "PRØVE",
    "kommunenummer": "0301",
}
NUMBER = "08816900086"  # synthetic (month + 80) with valid control digits
assert has_valid_control_digits(NUMBER)


def _check(
    sub: str, grade: str, data: dict, event_type: str = "Move", event_id: str = "e1"
) -> list[tuple[str, str | None]]:
    bus = Bus(
        events={"e1": RoutedEvent(event_type, "p" * 32, 0, grade, grade)}, versions={s.id: [(0, s)] for s in SUBS}
    )
    cloudevent = {
        "id": event_id,
        "type": f"no.samband.events.{event_type}",
        "source": "urn:no:skatteetaten:folkeregisteret",
    }
    return DeliveryScan(bus).check("t", sub, cloudevent, data)


def _move(**data) -> dict:
    return {"envelope": {"person": NUMBER}, "movedDate": "2024-03-01", **data}


def test_granted_fields_for_an_ugradert_person_are_no_finding_the_identity_number_included():
    assert _check("eventyrhagen-barnehager", "ugradert", _move(newAddress=ADDRESS)) == []
    assert _check("bergen-helsestasjon", "ugradert", _move(newAddress=ADDRESS, scope="betweenKommuner")) == []
    assert (
        _check("alta-bibliotek", "ugradert", {"envelope": {"person": NUMBER}, "deathDate": "2024-05-01"}, "Death") == []
    )


def test_a_field_not_granted_is_a_finding_and_an_identity_number_in_it_says_so():
    assert _check("alta-bibliotek", "ugradert", _move(previousAddress=ADDRESS)) == [
        (UNGRANTED_FIELD, "previousAddress")
    ]
    envelope = {"person": NUMBER, "addressProtection": "ugradert"}
    assert _check("oslo-barnehage", "ugradert", _move(envelope=envelope)) == [
        (UNGRANTED_FIELD, "envelope.addressProtection")
    ]
    assert _check(
        "stavanger-gebyr", "ugradert", {"movedDate": "2024-03-01", "envelope": {"correlationId": NUMBER}}
    ) == [(IDENTITY_NUMBER, "envelope.correlationId")]


def test_an_event_type_outside_the_subscription_is_all_ungranted():
    assert _check("alta-bibliotek", "ugradert", {"birthDate": "2024-01-01"}, "Birth") == [
        (UNGRANTED_FIELD, "birthDate")
    ]


def test_a_fortrolig_address_to_a_private_operator_is_a_finding_and_its_kommune_scope_too_but_not_to_a_public_body():
    assert _check("eventyrhagen-barnehager", "fortrolig", _move(newAddress=ADDRESS)) == [
        (PROTECTED_ADDRESS, "newAddress"),
        (PROTECTED_KOMMUNE, "subscription.kommuner"),
    ]
    assert _check("oslo-barnehage", "fortrolig", _move(newAddress=ADDRESS)) == []


def test_strengt_fortrolig_addresses_kommuner_and_what_reveals_them_are_findings():
    national = {"envelope": {"person": NUMBER, "kommunenummer": ["0301"]}, "newAddress": ADDRESS}
    assert _check("barnevern-nasjonal", "strengtFortrolig", national) == [
        (PROTECTED_KOMMUNE, "envelope.kommunenummer"),
        (PROTECTED_ADDRESS, "newAddress"),
    ]
    assert _check("bergen-helsestasjon", "strengtFortroligUtland", _move(scope="withinKommune")) == [
        (PROTECTED_KOMMUNE, "subscription.kommuner"),
        (PROTECTED_KOMMUNE, "scope"),
    ]
    bus = Bus(
        events={"e1": RoutedEvent("Move", "p" * 32, 0, "strengtFortrolig", "strengtFortrolig")},
        versions={s.id: [(0, s)] for s in SUBS},
    )
    cloudevent = {"id": "e1", "type": "no.samband.events.Move", "source": "urn:no:kommune:4601:fagsystem"}
    assert DeliveryScan(bus).check("t", "barnevern-nasjonal", cloudevent, {"envelope": {"person": NUMBER}}) == [
        (PROTECTED_KOMMUNE, "source")
    ]


def test_a_strengt_fortrolig_event_without_address_to_a_national_system_is_no_finding():
    data = {
        "envelope": {"person": NUMBER, "kommunenummer": [], "addressProtection": "strengtFortrolig"},
        "movedDate": "2024-03-01",
    }
    assert _check("barnevern-nasjonal", "strengtFortrolig", data) == []


def test_a_delivery_is_judged_by_the_subscription_as_it_was_when_the_delivery_was_written():
    alta = next(s for s in SUBS if s.id == "alta-bibliotek")
    narrowed = alta.model_copy(update={"fields": {**alta.fields, "Move": ["movedDate"]}})
    bus = Bus(
        events={"e1": RoutedEvent("Move", "p" * 32, 0, "ugradert", "ugradert")},
        versions={alta.id: [(1000, alta), (2000, narrowed)]},
    )
    cloudevent = {"id": "e1", "type": "no.samband.events.Move", "source": "urn:no:skatteetaten:folkeregisteret"}
    data = _move(newAddress=ADDRESS)
    assert DeliveryScan(bus).check("t", alta.id, cloudevent, data, at_ms=1500) == []
    assert DeliveryScan(bus).check("t", alta.id, cloudevent, data, at_ms=2500) == [
        (IDENTITY_NUMBER, "envelope.person"),
        (UNGRANTED_FIELD, "newAddress"),
    ]


def test_a_purge_carrying_more_than_the_delete_instruction_is_a_finding():
    purge = {"id": "e1-purge", "type": "no.samband.purge"}
    bus = Bus(versions={s.id: [(0, s)] for s in SUBS})
    assert DeliveryScan(bus).check("t", "barnevern-nasjonal", purge, {"delete": "address", "newAddress": ADDRESS}) == [
        (UNGRANTED_FIELD, "newAddress")
    ]


def test_in_free_text_a_number_needs_valid_control_digits_and_random_runs_in_hex_tokens_are_ignored():
    text = TextScan(Bus(strict_streets=frozenset({"Bjørkegata"})))
    assert text.kinds(f"person {NUMBER} moved") == [IDENTITY_NUMBER]
    assert text.kinds(f"id={NUMBER[:10]}{(int(NUMBER[10]) + 1) % 10}") == []  # wrong control digit
    assert text.kinds("offset 1234567890 at 123456789012 ms") == []
    assert text.kinds(f'{{"trace_id": "ab{NUMBER}cdef0123456789abcdef0"}}') == []


def test_a_strengt_fortrolig_street_is_found_as_a_word_in_any_case_and_json_escaped():
    text = TextScan(Bus(strict_streets=frozenset({"Bjørkegata", "Kirkeveien"})))
    assert text.kinds("moved to KIRKEVEIEN 4") == [PROTECTED_ADDRESS]
    assert text.kinds('{"error": "Bj\\u00f8rkegata 12"}') == [PROTECTED_ADDRESS]
    assert text.kinds("Kirkeveiene and Storgata") == []
