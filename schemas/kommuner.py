"""Kommunenummer validation against a dated snapshot of SSB classification 131."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

SNAPSHOT_DATE = "2024-01-01"
SNAPSHOT_SOURCE = "SSB Klass, classification 131 (kommuneinndeling), codesAt?date=2024-01-01"


@dataclass(frozen=True)
class Kommune:
    number: str  # 4 digits, leading zero kept
    name: str
    fylke_number: str
    fylke_name: str


@cache
def kommuner() -> dict[str, Kommune]:
    """All kommuner of the snapshot, by kommunenummer."""
    text = resources.files("schemas").joinpath(f"data/kommuner-{SNAPSHOT_DATE}.csv").read_text("utf-8")
    return {
        row["kommunenummer"]: Kommune(row["kommunenummer"], row["kommunenavn"], row["fylkesnummer"], row["fylkesnavn"])
        for row in csv.DictReader(text.splitlines())
    }


def is_kommune(number: str) -> bool:
    return number in kommuner()
