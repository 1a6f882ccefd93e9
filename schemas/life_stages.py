"""Life stages: events the bus derives from a person's birth date (docs/life-stages.md).

    stages = life_stages()                     # shipped (life_stages.yaml) + SAMBAND_LIFE_STAGES_FILE
    stages["SchoolStart"].date_for(date(2021, 3, 4))   # date(2027, 8, 1)
    stage_schema(stages["SchoolStart"])        # its Avro record, a catalog event type like any other

Each stage is an event type of the catalog (`no.samband.events.<name>`): envelope, then the
fields it carries, all of one fixed shape (`FIELDS`), so an operator's stage needs no schema
of its own. The router emits them (agents/routing/life_stages.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

import yaml  # type: ignore[import-untyped]  # no stubs installed; only safe_load is used

SHIPPED = Path(__file__).with_name("life_stages.yaml")
FILE_SETTING = "SAMBAND_LIFE_STAGES_FILE"

_DATE = {"type": "int", "logicalType": "date"}
FIELDS: dict[str, tuple[object, str]] = {  # name -> (Avro type, doc)
    "stageDate": (
        _DATE,
        "The stage's date: the birthday, the school year's first day, or when the kindergarten right "
        "applies (1 August) or, for a child who turns one in September to November, the day by which it must be met.",
    ),
    "birthDate": (_DATE, "Fødselsdato, as the bus knows it from the Birth event."),
    "ageYears": ("int", "The person's age in whole years on stageDate."),
    "legalBasis": ("string", "The law or rule the stage serves."),
    "service": ("string", "The municipal service the stage is for."),
}
_RULES = {"birthday": {"years"}, "kindergarten": set(), "school_year": {"age", "month"}}


class LifeStageError(ValueError):
    """A life-stage file is not valid; the message names the stage and what to change."""


@dataclass(frozen=True)
class LifeStage:
    name: str
    doc: str
    rule: dict
    law: str
    service: str
    fields: tuple[str, ...]

    def date_for(self, birth: date) -> date:
        """The date this stage applies to a person born on `birth`."""
        kind = self.rule["kind"]
        if kind == "birthday":
            return birthday(birth, int(self.rule["years"]))
        if kind == "school_year":
            return date(birth.year + int(self.rule["age"]), int(self.rule["month"]), 1)
        return kindergarten_right(birth)

    def age_on(self, birth: date, day: date) -> int:
        return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def birthday(birth: date, years: int) -> date:
    """The `years`th birthday; born on 29 February: 1 March in a year without one."""
    try:
        return birth.replace(year=birth.year + years)
    except ValueError:
        return date(birth.year + years, 3, 1)


def kindergarten_right(birth: date) -> date:
    """barnehageloven § 16: one year old by the end of August: from 1 August that year; in
    September to November: by the end of that month; in December: from 1 August the next year."""
    first = birthday(birth, 1)
    if first.month <= 8:
        return date(first.year, 8, 1)
    if first.month <= 11:
        following = date(first.year, first.month + 1, 1)
        return date.fromordinal(following.toordinal() - 1)
    return date(first.year + 1, 8, 1)


def stage_schema(stage: LifeStage) -> dict:
    """The stage's Avro record, a catalog event type: the envelope, then its fields."""
    fields: list[dict] = [
        {
            "name": "envelope",
            "type": "no.samband.envelope.Envelope",
            "classification": "ordinary",
            "doc": "CloudEvents envelope; its own fields carry their own classification.",
        }
    ]
    for name in stage.fields:
        avro_type, doc = FIELDS[name]
        fields.append({"name": name, "type": avro_type, "classification": "ordinary", "doc": doc})
    return {
        "type": "record",
        "name": stage.name,
        "namespace": "no.samband.events",
        # Not the stage's own `doc`: editing that must not change the schema (docs/life-stages.md).
        "doc": f"Life stage {stage.name}, derived by the bus from the birth date (docs/life-stages.md).",
        "fields": fields,
    }


def load(path: Path) -> list[LifeStage]:
    try:
        raw = yaml.safe_load(path.read_text("utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LifeStageError(f"cannot read life stages from {path}: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("stages"), list):
        raise LifeStageError(f"{path}: expected a mapping with a list `stages`")
    return [_stage(path, item) for item in raw["stages"]]


def _stage(path: Path, item) -> LifeStage:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise LifeStageError(f"{path}: every stage needs a `name`")
    name = item["name"]
    where = f"{path}: stage {name!r}"
    if not (name[:1].isupper() and name.isalnum() and name.isascii()):
        raise LifeStageError(f"{where}: a name is an event type name, letters and digits from a capital (SchoolStart)")
    rule = item.get("rule")
    if not isinstance(rule, dict) or rule.get("kind") not in _RULES:
        raise LifeStageError(f"{where}: `rule.kind` must be one of {sorted(_RULES)}")
    missing = _RULES[rule["kind"]] - set(rule)
    unknown = set(rule) - _RULES[rule["kind"]] - {"kind"}
    numbers = [rule.get(k) for k in _RULES[rule["kind"]]]
    if missing or unknown or not all(type(n) is int and 0 <= n <= 150 for n in numbers):
        raise LifeStageError(
            f"{where}: rule {rule['kind']} takes whole numbers from 0 to 150: "
            f"{sorted(_RULES[rule['kind']]) or 'nothing more'}"
        )
    if rule["kind"] == "school_year" and not 1 <= rule["month"] <= 12:
        raise LifeStageError(f"{where}: `rule.month` is 1 to 12")
    fields = item.get("fields", list(FIELDS))
    if not isinstance(fields, list) or not set(fields) <= set(FIELDS) or not fields:
        raise LifeStageError(f"{where}: `fields` is a list from {list(FIELDS)}")
    for key in ("doc", "law", "service"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise LifeStageError(f"{where}: `{key}` is required text")
    return LifeStage(name, " ".join(item["doc"].split()), rule, item["law"], item["service"], tuple(fields))


@cache
def life_stages() -> dict[str, LifeStage]:
    """The shipped stages and the operator's (SAMBAND_LIFE_STAGES_FILE), by name; read once."""
    stages = {stage.name: stage for stage in load(SHIPPED)}
    extra = os.environ.get(FILE_SETTING)
    for stage in load(Path(extra)) if extra else []:
        if stage.name in stages:
            raise LifeStageError(f"{extra}: stage {stage.name!r} is already defined; choose another name")
        stages[stage.name] = stage
    return stages
