"""Domain validation: stable reason codes, messages without personal data."""

from datetime import UTC, date, datetime, timedelta

import pytest

from schemas.examples import BERGEN_ADDRESS, OSLO_ADDRESS, example, example_types
from schemas.life_stages import life_stages
from schemas.moves import scope_for
from schemas.validation import ValidationError, ensure_valid, validate

NOW = datetime(2024, 3, 2, tzinfo=UTC)


def codes(event_type, record):
    return [(f.code, f.field) for f in validate(event_type, record, now=NOW)]


@pytest.mark.parametrize("event_type", [t for t in example_types() if t not in life_stages()])
def test_every_example_is_valid(event_type):
    assert codes(event_type, example(event_type)) == []


@pytest.mark.parametrize("event_type", sorted(life_stages()))
def test_a_life_stage_event_from_a_source_is_refused(event_type):
    """Only the router derives them; a source could otherwise announce a child who does not exist."""
    assert codes(event_type, example(event_type)) == [("type.derived", "envelope.type")]


def test_bad_control_digit_in_the_person_identifier():
    record = example("Death")
    record["envelope"]["person"] = "03851598731"
    assert codes("Death", record) == [("identity.checksum", "envelope.person")]


def test_h_number_as_person_identifier_is_refused():
    record = example("Death")
    record["envelope"]["person"] = "15437510064"  # month + 40, control digits valid
    assert codes("Death", record) == [("identity.h_number", "envelope.person")]


def test_unknown_and_malformed_kommunenummer():
    record = example("Death")
    record["envelope"]["kommunenummer"] = ["9999", "5401", "301"]
    assert codes("Death", record) == [
        ("kommune.unknown", "envelope.kommunenummer"),
        ("kommune.renumbered", "envelope.kommunenummer"),  # Tromsø's number before the 2024 split
        ("kommune.format", "envelope.kommunenummer"),
    ]


def test_a_code_a_reform_retired_is_right_on_an_event_dated_before_the_reform_only():
    death = example("Death")
    death["envelope"]["kommunenummer"] = ["5401"]
    death["deathDate"] = date(2023, 12, 31)
    assert codes("Death", death) == []
    death["deathDate"] = date(2024, 1, 2)
    failures = validate("Death", death, now=datetime(2024, 6, 1, tzinfo=UTC))
    assert [(f.code, f.field) for f in failures] == [("kommune.renumbered", "envelope.kommunenummer")]
    assert "5401" not in failures[0].message and "Tromsø" not in failures[0].message  # it may be protected
    # A late correction of a 2019 move: the move's date decides, not when the event was sent.
    move = example("Move")
    move["movedDate"] = date(2019, 5, 1)
    move["newAddress"] = {**move["newAddress"], "kommunenummer": "0101"}  # Halden, 3001 in 2020, 3101 in 2024
    assert ("kommune.renumbered", "newAddress.kommunenummer") not in codes("Move", move)
    move["movedDate"] = date(2022, 5, 1)
    assert ("kommune.renumbered", "newAddress.kommunenummer") in codes("Move", move)


def test_the_reform_days_own_address_change_is_valid():
    # What the register sends on the day for everyone in Tromsø: from 5401 to 5501, dated that day.
    move = example("Move")
    move["envelope"]["kommunenummer"] = ["5401", "5501"]
    move["previousAddress"] = {**OSLO_ADDRESS, "kommunenummer": "5401"}
    move["newAddress"] = {**BERGEN_ADDRESS, "kommunenummer": "5501"}
    move["movedDate"] = date(2024, 1, 1)
    move["cause"] = "municipalReform"
    move["scope"] = "withinKommune"
    move["envelope"]["time"] = datetime(2024, 1, 1, 5, tzinfo=UTC)
    assert validate("Move", move, now=datetime(2024, 1, 1, 6, tzinfo=UTC)) == []


def test_a_register_record_of_today_is_dated_today_not_by_the_persons_birth():
    record = example("PopulationRecord")
    record["birthDate"] = date(1990, 1, 1)
    record["envelope"]["kommunenummer"] = ["5401"]
    assert ("kommune.renumbered", "envelope.kommunenummer") in codes("PopulationRecord", record)


def test_unknown_kommune_in_an_address():
    record = example("Immigration")
    record["address"] = {**BERGEN_ADDRESS, "kommunenummer": "9999"}
    assert codes("Immigration", record) == [("kommune.unknown", "address.kommunenummer")]


def test_dates_out_of_range():
    record = example("Birth")
    record["birthDate"] = NOW.date() + timedelta(days=1)
    assert codes("Birth", record) == [("date.future", "birthDate")]
    record["birthDate"] = date(1849, 12, 31)
    assert codes("Birth", record) == [("date.too_early", "birthDate")]
    move = example("Move")
    move["movedDate"] = NOW.date() + timedelta(days=400)
    assert codes("Move", move) == [("date.too_late", "movedDate")]


def test_move_needs_a_new_address_unless_annulled():
    record = example("Move")
    record["newAddress"] = None
    assert codes("Move", record) == [("relation.missing_new_address", "newAddress")]
    record["envelope"].update(changeKind="annulment", correctsEventId="earlier-event")
    assert codes("Move", record) == []


def test_move_scope_must_match_the_kommuner():
    record = example("Move")
    record["scope"] = "withinKommune"
    assert codes("Move", record) == [("relation.move_scope", "scope")]


def test_move_kommuner_must_be_in_the_envelope():
    record = example("Move")
    record["envelope"]["kommunenummer"] = ["4601"]
    assert codes("Move", record) == [("relation.kommune_not_in_envelope", "envelope.kommunenummer")]


def test_correction_must_name_the_corrected_event():
    record = example("Death")
    record["envelope"]["changeKind"] = "correction"
    assert codes("Death", record) == [("relation.missing_corrected_event", "envelope.correctsEventId")]


def test_identity_change_to_the_same_number():
    record = example("IdentityNumberChange")
    record["previousIdentifier"] = record["envelope"]["person"]
    assert codes("IdentityNumberChange", record) == [("relation.same_identifier", "previousIdentifier")]


def test_envelope_type_must_name_the_event_type():
    assert codes("Death", example("Birth") | {"deathDate": date(2024, 1, 1)})[0] == (
        "envelope.type_mismatch",
        "envelope.type",
    )


def test_failures_never_contain_identity_numbers_or_addresses():
    record = example("Move")
    record["envelope"]["person"] = "03851598731"
    record["envelope"]["kommunenummer"] = ["9998"]
    record["newAddress"] = {**OSLO_ADDRESS, "kommunenummer": "9998"}
    with pytest.raises(ValidationError) as raised:
        ensure_valid("Move", record, now=NOW)
    texts = [str(raised.value)] + [f"{f.code} {f.field} {f.message}" for f in raised.value.failures]
    for secret in ("03851598731", "9998", "Testveien", "0150", "OSLO"):
        assert all(secret not in text for text in texts), secret


@pytest.mark.parametrize(
    ("previous", "new", "viewpoint", "expected"),
    [
        ("0301", "0301", "0301", "within"),
        ("0301", "4601", "4601", "into"),
        ("0301", "4601", "0301", "outOf"),
        ("0301", "4601", "5001", None),
        (None, "4601", "4601", "into"),
    ],
)
def test_move_scope_seen_from_a_kommune(previous, new, viewpoint, expected):
    assert scope_for(previous, new, viewpoint) == expected
