"""Synthetic inputs shared by the connector tests."""

from __future__ import annotations

import itertools
from functools import cache

from synthetic import Simulation, SyntheticConfig


@cache
def synthetic_feed(count: int, seed: int = 7) -> tuple:
    """The first `count` event documents of a seeded synthetic population (synthetic identity numbers)."""
    simulation = Simulation(SyntheticConfig(persons=20_000, seed=seed))
    return tuple(itertools.islice(simulation.events(years=None), count))
