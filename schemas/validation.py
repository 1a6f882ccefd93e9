"""Domain validation of events, separate from Avro validity.

    failures = validate("Move", record)   # [] when valid
    ensure_valid("Move", record)          # raises ValidationError(failures)

Each Failure has a stable `code` (identity.checksum, identity.h_number, kommune.unknown,
date.future, relation.missing_new_address, ...), the `field` path, and a human `message`.
Neither code, field nor message ever contains an identity number or an address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache

from schemas.catalog import EVENTS_NAMESPACE, catalog
from schemas.identity import InvalidIdentity, parse_identity
from schemas.kommuner import SNAPSHOT_DATE, renumberings, valid_on
from schemas.life_stages import life_stages
from schemas.moves import move_scope

EARLIEST_DATE = date(1850, 1, 1)
# Dates of things that have happened; other dates (a planned move) may lie up to a year ahead.
PAST_ONLY_DATES = frozenset({"birthDate", "deathDate"})
MAX_FUTURE = timedelta(days=366)
MAX_CLOCK_SKEW = timedelta(days=1)
ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Failure:
    code: str
    field: str
    message: str


class ValidationError(ValueError):
    def __init__(self, failures: list[Failure]):
        super().__init__("; ".join(f"{f.field}: {f.code}" for f in failures))
        self.failures = failures


@dataclass(frozen=True)
class _Plan:
    date_fields: tuple[str, ...]
    address_fields: tuple[str, ...]


@cache
def _plan(event_type: str) -> _Plan:
    dates, addresses = [], []
    for field in catalog().fields(event_type):
        if field.path.startswith("envelope."):
            continue
        if field.avro_type in ("date", "null|date"):
            dates.append(field.path)
        elif field.avro_type in ("no.samband.common.Address", "null|no.samband.common.Address"):
            addresses.append(field.path)
    return _Plan(tuple(dates), tuple(addresses))


def _identity(value, field: str, failures: list[Failure]) -> None:
    try:
        parse_identity(value)
    except InvalidIdentity as exc:
        failures.append(Failure(exc.reason, field, str(exc)))


def _event_day(event_type: str, plan: _Plan, record: dict, envelope: dict) -> date:
    """The day the event happened: its own date field (a move's, a death's; a birth date only for a
    Birth: on a stage or a register record it is not when the event happened), else its time."""
    for field in plan.date_fields:
        if (field != "birthDate" or event_type == "Birth") and record.get(field) is not None:
            return record[field]
    return envelope["time"].date()


def _kommune(value, field: str, day: date, failures: list[Failure]) -> None:
    """`day`: the event's own date. A code a reform retired is right on an event dated before the
    reform, or on the reform day itself: the reform's own address change, dated that day, names
    the old code as where the person lived the day before. After that it is wrong."""
    if not (isinstance(value, str) and len(value) == 4 and value.isdigit()):
        failures.append(Failure("kommune.format", field, "kommunenummer must be 4 digits"))
    elif valid_on(value, day - ONE_DAY):
        return
    elif value in renumberings():
        # Neither the code nor the kommune's name: the message reaches readable dead-letter headers
        # and HTTP answers, and for a protected person the kommune is what is protected.
        failures.append(
            Failure(
                "kommune.renumbered",
                field,
                "a kommunenummer a kommune reform retired before the event's date: use the code of that date "
                "(docs/reform-day.md)",
            )
        )
    else:
        failures.append(
            Failure("kommune.unknown", field, f"not a kommune in SSB classification 131 as of {SNAPSHOT_DATE}")
        )


def _date(value: date, field: str, today: date, failures: list[Failure]) -> None:
    if value < EARLIEST_DATE:
        failures.append(Failure("date.too_early", field, f"date before {EARLIEST_DATE.isoformat()}"))
    elif field in PAST_ONLY_DATES and value > today:
        failures.append(Failure("date.future", field, "date lies in the future"))
    elif value > today + MAX_FUTURE:
        failures.append(Failure("date.too_late", field, "date more than a year ahead"))


def validate(event_type: str, record: dict, *, now: datetime | None = None) -> list[Failure]:
    now = now or datetime.now(UTC)
    failures: list[Failure] = []
    envelope = record["envelope"]
    if event_type in life_stages():
        # Only the router emits these, from the birth dates it knows; a source that could send
        # one could tell every kindergarten of a child who does not exist.
        return [Failure("type.derived", "envelope.type", f"{event_type} is derived by the bus; no source sends it")]
    plan = _plan(event_type)
    day = _event_day(event_type, plan, record, envelope)
    _validate_envelope(event_type, envelope, now, day, failures)
    for field in plan.date_fields:
        if record.get(field) is not None:
            _date(record[field], field, now.date(), failures)
    for field in plan.address_fields:
        if record.get(field) is not None:
            _kommune(record[field]["kommunenummer"], f"{field}.kommunenummer", day, failures)
    rule = _RELATIONS.get(event_type)
    if rule:
        rule(record, failures)
    return failures


def ensure_valid(event_type: str, record: dict, *, now: datetime | None = None) -> None:
    failures = validate(event_type, record, now=now)
    if failures:
        raise ValidationError(failures)


def _validate_envelope(event_type: str, envelope: dict, now: datetime, day: date, failures: list[Failure]) -> None:
    if envelope["type"] != f"{EVENTS_NAMESPACE}.{event_type}":
        failures.append(
            Failure("envelope.type_mismatch", "envelope.type", f"type does not name event type {event_type}")
        )
    _identity(envelope["person"], "envelope.person", failures)
    for kommune in envelope.get("kommunenummer", []):
        _kommune(kommune, "envelope.kommunenummer", day, failures)
    time = envelope["time"]
    if time.year < EARLIEST_DATE.year:
        failures.append(Failure("date.too_early", "envelope.time", f"time before {EARLIEST_DATE.isoformat()}"))
    elif time > now + MAX_CLOCK_SKEW:
        failures.append(Failure("date.future", "envelope.time", "time lies in the future"))
    kind, corrects = envelope.get("changeKind", "new"), envelope.get("correctsEventId")
    if kind in ("correction", "annulment") and not corrects:
        failures.append(
            Failure(
                "relation.missing_corrected_event", "envelope.correctsEventId", f"a {kind} names the event it changes"
            )
        )
    elif kind == "new" and corrects:
        failures.append(
            Failure("relation.unexpected_corrected_event", "envelope.correctsEventId", "a new event corrects nothing")
        )


def _move(record: dict, failures: list[Failure]) -> None:
    new, previous = record.get("newAddress"), record.get("previousAddress")
    if new is None:
        if record["envelope"].get("changeKind") != "annulment":
            failures.append(Failure("relation.missing_new_address", "newAddress", "a move has a new address"))
        return
    previous_kommune = previous["kommunenummer"] if previous else None
    if previous is not None and record["scope"] != move_scope(previous_kommune, new["kommunenummer"]):
        failures.append(Failure("relation.move_scope", "scope", "scope does not match the old and new kommunenummer"))
    concerned = set(record["envelope"].get("kommunenummer", []))
    if not {new["kommunenummer"], previous_kommune} - {None} <= concerned:
        failures.append(
            Failure(
                "relation.kommune_not_in_envelope",
                "envelope.kommunenummer",
                "the old and new kommune must both be listed",
            )
        )


def _birth(record: dict, failures: list[Failure]) -> None:
    for parent in record.get("parents", []):
        _identity(parent, "parents", failures)


def _civil_status(record: dict, failures: list[Failure]) -> None:
    if record.get("spouse") is not None:
        _identity(record["spouse"], "spouse", failures)


def _parental_responsibility(record: dict, failures: list[Failure]) -> None:
    for holder in record.get("holders", []):
        if holder.get("holder") is not None:
            _identity(holder["holder"], "holders.holder", failures)


def _shared_residence(record: dict, failures: list[Failure]) -> None:
    if record.get("endDate") is not None and record["endDate"] < record["startDate"]:
        failures.append(Failure("relation.end_before_start", "endDate", "shared residence ends before it starts"))


def _identity_change(record: dict, failures: list[Failure]) -> None:
    _identity(record["previousIdentifier"], "previousIdentifier", failures)
    if record["previousIdentifier"] == record["envelope"]["person"]:
        failures.append(
            Failure("relation.same_identifier", "previousIdentifier", "the new identifier equals the previous one")
        )


_RELATIONS = {
    "Birth": _birth,
    "Move": _move,
    "CivilStatusChange": _civil_status,
    "ParentalResponsibilityChange": _parental_responsibility,
    "SharedResidence": _shared_residence,
    "IdentityNumberChange": _identity_change,
}
