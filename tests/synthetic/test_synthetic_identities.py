"""Every identity number the generator emits is synthetic, valid under docs/domain.md §1, and unique."""

import numpy as np
import pytest

from schemas.identity import IdentityKind, control_digits, parse_identity
from synthetic import Simulation, SyntheticConfig
from synthetic.identity_numbers import (
    IdentityAllocator,
    IdentityNumbersExhausted,
    _digits,
    control_digits_vectorised,
    format_identity,
)


def test_100000_generated_persons_have_unique_valid_synthetic_numbers():
    simulation = Simulation(SyntheticConfig(persons=100_000, seed=7))
    numbers = [format_identity(n) for n in simulation.population.ident[: simulation.population.size]]

    parsed = [parse_identity(number) for number in numbers]  # raises on any invalid number

    assert all(identity.synthetic for identity in parsed)
    assert len(set(numbers)) == len(numbers)
    d_numbers = sum(identity.kind is IdentityKind.DNR for identity in parsed)
    assert 0.01 < d_numbers / len(parsed) < 0.05


def test_identity_numbers_in_event_documents_are_synthetic_and_valid():
    simulation = Simulation(SyntheticConfig(persons=5_000, seed=3))
    seen = set()
    for document in simulation.events(years=1):
        body = document.document()
        references = [body["folkeregisteridentifikator"]]
        opplysninger = body["opplysninger"]
        references += [
            opplysninger.get(key) for key in ("mor", "far", "relatertVedSivilstand", "deltBostedMedForelder")
        ]
        references += [opplysninger.get("forrigeFolkeregisteridentifikator"), *opplysninger.get("ansvarlige", [])]
        for number in filter(None, references):
            assert parse_identity(number).synthetic
            seen.add(number)
    assert len(seen) > 500


@pytest.mark.parametrize("rule_2032", [False, True])
def test_vectorised_control_digits_match_schemas_identity(rule_2032):
    first9 = np.random.default_rng(1).integers(0, 10, size=(20_000, 9))
    k1, k2 = control_digits_vectorised(first9, rule_2032=rule_2032)
    for row, a, b in zip(first9, k1, k2, strict=False):
        expected = control_digits("".join(map(str, row)), rule_2032=rule_2032)
        assert (None if a < 0 else f"{a}{b}") == expected


def test_numbers_issued_under_the_2032_rule_are_valid_and_do_not_collide():
    allocator = IdentityAllocator()
    days = np.full(700, 19_000)  # 700 persons born the same day
    classic = allocator.allocate(days[:300], np.zeros(300, bool))
    new_rule = allocator.allocate(days[300:], np.zeros(400, bool), rule_2032=True)
    numbers = [format_identity(n) for n in np.concatenate([classic, new_rule])]
    assert len(set(numbers)) == 700
    assert all(parse_identity(number).synthetic for number in numbers)
    # Some numbers exist only under the 2032 rule: k1 leaves a remainder of 1-3.
    first9 = _digits(new_rule // 100, 9)
    remainders = (first9 @ np.array([3, 7, 6, 1, 8, 9, 4, 5, 2]) + (new_rule // 10) % 10) % 11
    assert set(remainders.tolist()) - {0}


def test_running_out_of_individnummer_for_a_birth_date_is_an_error():
    allocator = IdentityAllocator()
    with pytest.raises(IdentityNumbersExhausted):
        allocator.allocate(np.full(1_000, 19_000), np.zeros(1_000, bool))
