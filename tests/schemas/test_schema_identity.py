"""Identity numbers: the official vectors of docs/domain.md §1, and properties over generated numbers."""

from datetime import date

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from schemas.identity import IdentityKind, InvalidIdentity, control_digits, is_valid_identity, parse_identity

OFFICIAL_VECTORS = [
    ("30108299939", True),
    ("30908299902", True),
    ("20036914700", True),
    ("03851598730", True),
    ("20036914712", False),
    ("29020073150", True),
    ("29020105729", False),
    ("55102499947", True),
    ("41819077906", True),
    ("41819077302", True),
]
H_NUMBER = "15437510064"  # 15 March 1975 with 40 added to the month; control digits valid
REASONS = {"identity.format", "identity.checksum", "identity.h_number", "identity.date"}


@pytest.mark.parametrize(("number", "valid"), OFFICIAL_VECTORS)
def test_official_vectors_classify_correctly(number, valid):
    assert is_valid_identity(number) is valid


@pytest.mark.parametrize(
    ("number", "kind", "synthetic"),
    [
        ("30908299902", IdentityKind.FNR, True),
        ("55102499947", IdentityKind.DNR, False),
        ("41819077302", IdentityKind.DNR, True),
    ],
)
def test_official_vectors_report_kind_and_synthetic(number, kind, synthetic):
    identity = parse_identity(number)
    assert (identity.kind, identity.synthetic) == (kind, synthetic)


def test_leap_day_in_a_non_leap_year_is_a_date_failure():
    with pytest.raises(InvalidIdentity) as raised:
        parse_identity("29020105729")
    assert raised.value.reason == "identity.date"


def test_h_numbers_are_rejected():
    with pytest.raises(InvalidIdentity) as raised:
        parse_identity(H_NUMBER)
    assert raised.value.reason == "identity.h_number"


@given(
    birth=st.dates(min_value=date(1900, 1, 1), max_value=date(2039, 12, 31)),
    individual=st.integers(0, 999),
    d_number=st.booleans(),
    rule_2032=st.booleans(),
)
def test_generated_synthetic_numbers_are_valid_and_synthetic(birth, individual, d_number, rule_2032):
    day = birth.day + (40 if d_number else 0)
    first9 = f"{day:02d}{birth.month + 80:02d}{birth.year % 100:02d}{individual:03d}"
    digits = control_digits(first9, rule_2032=rule_2032)
    assume(digits is not None)
    identity = parse_identity(first9 + digits)
    assert identity.synthetic
    assert identity.kind == (IdentityKind.DNR if d_number else IdentityKind.FNR)
    assert (identity.day, identity.month) == (birth.day, birth.month)


@given(st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_random_11_digit_strings_are_classified_without_leaking_the_number(number):
    try:
        identity = parse_identity(number)
    except InvalidIdentity as exc:
        assert exc.reason in REASONS
        assert number not in str(exc)
        return
    # Whatever is accepted passes k2, is no H-number and carries a real day and month.
    assert control_digits(number[:9], rule_2032=True) is not None
    assert not 41 <= int(number[2:4]) <= 52
    assert 1 <= identity.day <= 31 and 1 <= identity.month <= 12


@given(st.text(max_size=14))
def test_anything_else_is_a_format_failure_or_valid(text):
    assume(not (len(text) == 11 and text.isascii() and text.isdigit()))
    with pytest.raises(InvalidIdentity) as raised:
        parse_identity(text)
    assert raised.value.reason == "identity.format"
