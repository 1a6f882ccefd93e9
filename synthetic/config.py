"""Settings of one synthetic Norway: size, seed, yearly rates, optional scenarios."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True)
class YearlyRates:
    """Events per resident per year, roughly Norway 2024 (SSB); the register-specific ones are guesses."""

    births: float = 0.010
    deaths: float = 0.008
    # Move decisions; spouses moving along and moves at marriage/divorce bring the share of
    # persons moving to ~12 %/yr, about half of them to another kommune (move_between_share).
    moves: float = 0.09
    immigration: float = 0.017
    emigration: float = 0.009
    marriages: float = 0.004  # marriages per resident; each gives two endringISivilstand
    divorces: float = 0.0017
    name_changes: float = 0.005
    address_change_without_move: float = 0.002
    parental_responsibility: float = 0.001
    shared_residence: float = 0.0005
    new_address_protection: float = 0.0002  # times protection_scale
    d_number_to_fnr: float = 0.10  # per D-number holder per year
    corrections: float = 0.001
    annulments: float = 0.0003


@dataclass(frozen=True)
class Reform:
    """Reform day: every kommune of `fylke` gets the number `new_fylke` + its last two digits."""

    fylke: str = "46"
    new_fylke: str = "48"
    day: date = date(2025, 1, 1)


@dataclass(frozen=True)
class SyntheticConfig:
    persons: int = 10_000
    seed: int = 0
    start: date = date(2024, 1, 1)
    rates: YearlyRates = field(default_factory=YearlyRates)
    move_between_share: float = 0.5
    # Shares of the initial population; immigrants get a D-number with immigrant_d_number_share.
    d_number_share: float = 0.03
    immigrant_d_number_share: float = 0.3
    return_migration_share: float = 0.2
    # Address protection: fortrolig ~0.1 %, strengt fortrolig ~0.02 %, times this factor
    # (raise it so small demos and tests see protected persons).
    protection_scale: float = 1.0
    # Share of events of types consumers may not know (endringIStatsborgerskap, made-up future types).
    unusual_type_share: float = 0.002
    reform: Reform | None = None
