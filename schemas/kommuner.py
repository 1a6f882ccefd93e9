"""Kommunenummer validation against a dated snapshot of SSB classification 131."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from functools import cache, lru_cache
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


CHANGES_FILE = "data/kommune-changes.csv"


@dataclass(frozen=True)
class Renumbering:
    """One kommunenummer retired on a reform day, and the code or codes that took its place."""

    valid_from: date  # the first day the old code is no longer valid
    old: str
    old_name: str
    new: tuple[str, ...]  # several: the kommune was split

    @property
    def kind(self) -> str:
        """ "split" (one code became several) or "renumbered" (merged or not: see `merged_with`)."""
        return "split" if len(self.new) > 1 else "renumbered"


@cache
def renumberings() -> dict[str, Renumbering]:
    """Every retired kommunenummer of the data (the reforms of 2020 and 2024), by old code."""
    text = resources.files("schemas").joinpath(CHANGES_FILE).read_text("utf-8")
    found: dict[str, Renumbering] = {}
    for row in csv.DictReader(text.splitlines()):
        old, earlier = row["old_code"], found.get(row["old_code"])
        new = (*earlier.new, row["new_code"]) if earlier else (row["new_code"],)
        found[old] = Renumbering(date.fromisoformat(row["valid_from"]), old, row["old_name"], new)
    return found


def is_known(number: str) -> bool:
    """A kommunenummer of today, or one retired by a reform the data holds."""
    return number in kommuner() or number in renumberings()


def successors(number: str) -> tuple[str, ...]:
    """Today's codes for `number`: itself when current, else the codes its reforms led to, in
    order (Tromsø 1902 became 5401 in 2020 and 5501 in 2024)."""
    change = renumberings().get(number)
    if change is None:
        return (number,)
    return tuple(dict.fromkeys(code for new in change.new for code in successors(new)))


@lru_cache(maxsize=4096)  # on the router's path for every move: codes are few, events many
def same_kommune_today(number: str) -> str:
    """The one code of today `number` is the same kommune as: itself when current or split."""
    found = successors(number)
    return found[0] if len(found) == 1 else number


@cache
def predecessors() -> dict[str, frozenset[str]]:
    """Today's code -> the retired codes that became that one code alone (not those split): an
    event dated before a reform carries the old code, and is the same kommune's."""
    found: dict[str, set[str]] = {}
    for old in renumberings():
        after = successors(old)
        if len(after) == 1:
            found.setdefault(after[0], set()).add(old)
    return {code: frozenset(olds) for code, olds in found.items()}


def merged_with(change: Renumbering) -> list[str]:
    """The other retired codes that became the same single code on the same day (a merger)."""
    if change.kind == "split":
        return []
    return sorted(
        old
        for old, other in renumberings().items()
        if old != change.old and other.new == change.new and other.valid_from == change.valid_from
    )


def valid_on(number: str, day: date) -> bool:
    """Whether `number` was a kommunenummer on `day`: today's codes always (the data does not say
    since when), a retired one until its reform."""
    if number in kommuner():
        return True
    change = renumberings().get(number)
    return change is not None and day < change.valid_from
