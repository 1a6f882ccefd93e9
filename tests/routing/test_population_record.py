"""A register extract's PopulationRecord teaches the bus; no subscription may select it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from subscription_factory import subscription


def test_a_subscription_cannot_select_population_records():
    with pytest.raises(ValidationError) as refused:
        subscription("oslo-uttrekk", ["0301"], ["PopulationRecord"], {"PopulationRecord": ["birthDate"]})
    assert "PopulationRecord teaches the bus birth dates for life stages and goes to no subscription" in str(
        refused.value
    )
