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


CHANGES_FILE = "data/kommune-changes.csv"


@dataclass(frozen=True)
class Renumbering:
    """One kommunenummer retired on a reform day, and the code or codes that took its place."""

    valid_from: date  # the first day the old code is no longer valid
    old: str
    old_name: str
    new: tuple[str, ...]  # several: the kommune was split
    new_names: tuple[str, ...]  # the names under the new codes, in their order

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
        names = (*earlier.new_names, row["new_name"]) if earlier else (row["new_name"],)
        found[old] = Renumbering(date.fromisoformat(row["valid_from"]), old, row["old_name"], new, names)
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


def is_split(number: str) -> bool:
    """Whether a reform split the kommune (at any step to today): an event with the code may be
    a person of any of its parts."""
    return len(successors(number)) > 1


@lru_cache(maxsize=4096)  # on the router's path for every move: codes are few, events many
def lineage(number: str) -> tuple[str, ...]:
    """`number` and the codes it became, one reform after the other, up to today or a split
    (Ski: 0213, 3020 Nordre Follo, 3207)."""
    codes = [number]
    while (change := renumberings().get(codes[-1])) is not None and len(change.new) == 1:
        codes.append(change.new[0])
    return tuple(codes)


def same_kommune(a: str, b: str) -> bool:
    """Whether one code became the other by reforms (Tromsø 5401 and 5501): the same kommune.
    Two codes merged into a third are not the same as each other (Ski and Oppegård in 2019)."""
    return a == b or b in lineage(a) or a in lineage(b)


@cache
def _older() -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {}
    for old in renumberings():
        for later in lineage(old)[1:]:
            found.setdefault(later, set()).add(old)
    return {code: frozenset(olds) for code, olds in found.items()}


def older_codes(number: str) -> frozenset[str]:
    """The retired codes that became `number` by reforms, not split on the way: an event dated
    before a reform carries one of them, and is the same kommune's (5501: 5401 and 1902)."""
    return _older().get(number, frozenset())


def merged_with(change: Renumbering) -> list[str]:
    """The other retired codes that became the same single code on the same day (a merger)."""
    if len(change.new) > 1:
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


def reform_days() -> list[date]:
    """The reform days the data holds (2020-01-01, 2024-01-01), in order."""
    return sorted({change.valid_from for change in renumberings().values()})


def renumbering_record(day: date) -> dict:
    """The reform of `day` as the catalog's reference record `KommuneRenumbering`: every code it
    retired, in code order. Raises ValueError, naming the reform days known, for another day."""
    changes = sorted((c for c in renumberings().values() if c.valid_from == day), key=lambda c: c.old)
    if not changes:
        known = ", ".join(d.isoformat() for d in reform_days())
        raise ValueError(f"no reform on {day.isoformat()} in the kommune data; reform days: {known}")
    return {
        "validFrom": day,
        "changes": [
            {"oldCode": c.old, "oldName": c.old_name, "newCodes": list(c.new), "newNames": list(c.new_names)}
            for c in changes
        ],
    }
