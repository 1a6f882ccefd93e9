"""Routing one canonical event: who gets it, with which fields. Pure logic; the stage (stage.py) keeps the state.

    router = Router(index)
    result = router.route(event_type, record, person, state, original_recipients)

- A new event goes to the subscriptions indexed under its kommuner (a move: the old and the
  new kommune) or under "all", whose predicates hold.
- A correction or annulment goes to exactly the subscriptions that received the event it
  names (`original_recipients`, from the routing record), still subscribed to the type;
  None there means the original is unknown: a dead letter `relation.unknown_corrected_event`.
- Address protection (schemas/protection.py) decides which fields are withheld; a
  change that makes a subscription lose its right to the person's address sends that
  subscription a `purge` first, if it has received data on the person.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import NamedTuple

import orjson

from agents.routing.index import Entry, Grant, RoutingIndex
from bus.state import stored_json
from schemas.catalog import EVENTS_NAMESPACE, catalog
from schemas.identity import InvalidIdentity, parse_identity
from schemas.moves import scope_for
from schemas.protection import NEUTRAL_SOURCE, is_strict, may_receive, stricter, withheld

PURGE_TYPE = "no.samband.purge"


class PersonState(NamedTuple):  # a tuple: made for most events, a frozen dataclass costs 3x
    """What the router remembers of a person (table `router-persons`, keyed by pseudonym)."""

    protection: str = "ugradert"
    birth_date: date | None = None
    received: frozenset[str] = frozenset()  # subscriptions that have received data on the person
    # Subscriptions purged because an event other than an AddressProtectionChange revealed the
    # grade: when the change itself comes through, each gets a purge tied to it.
    untied: frozenset[str] = frozenset()
    # For life-stage events (agents/routing/life_stages.py): the identity number sealed (hex), the
    # kommune lived in, the day the bus learned the birth date, the stages emitted, died or emigrated.
    number: str | None = None
    kommune: str | None = None
    known_since: date | None = None
    stages: frozenset[str] = frozenset()
    departed: bool = False

    def to_json(self) -> bytes:
        # orjson writes a date as isoformat() would
        stored: dict = {"protection": self.protection, "birth_date": self.birth_date, "received": sorted(self.received)}
        if self.untied:
            stored["untied"] = sorted(self.untied)
        if self.number is not None:
            stored["number"] = self.number
            stored["known_since"] = self.known_since
        if self.kommune is not None:
            stored["kommune"] = self.kommune
        if self.stages:
            stored["stages"] = sorted(self.stages)
        if self.departed:
            stored["departed"] = True
        return stored_json(stored)

    @classmethod
    def from_json(cls, data: bytes | None) -> PersonState:
        if not data:
            return _NEW_PERSON
        raw = orjson.loads(data)
        birth = raw.get("birth_date")
        known = raw.get("known_since")
        return cls(
            raw["protection"],
            date.fromisoformat(birth) if birth else None,
            frozenset(raw["received"]),
            frozenset(raw.get("untied", ())),
            raw.get("number"),
            raw.get("kommune"),
            date.fromisoformat(known) if known else None,
            frozenset(raw.get("stages", ())),
            raw.get("departed", False),
        )


_NEW_PERSON = PersonState()  # a person the bus has not seen (a tuple: one can be shared)


class Delivery(NamedTuple):
    subscription: str
    key: bytes  # `<subscription id>/<person pseudonym>`
    value: bytes  # the delivery record JSON (docs/architecture.md)


class RouteResult:
    __slots__ = ("deliveries", "recipients", "state", "unknown_original")  # one per event: kept cheap

    def __init__(self, state: PersonState):
        self.deliveries: list[Delivery] = []
        self.recipients: list[str] = []  # subscriptions sent the event itself
        self.state = state  # the state passed in, when the event changed nothing
        self.unknown_original = False


class Router:
    def __init__(self, index: RoutingIndex, *, backfill: bool = False):
        self.index = index
        # A backfill's router (agents/routing/backfill.py): its events say so, as the CloudEvents
        # extension attribute `backfill`.
        self.backfill = backfill
        self._dataschema = {
            t: f"/subjects/{EVENTS_NAMESPACE}.{t}/versions/{catalog().current(t).version}"
            for t in catalog().event_types()
        }

    def route(
        self,
        event_type: str,
        record: dict,
        person: str,
        state: PersonState,
        original_recipients: Sequence[str] | None,
        at_least: str = "ugradert",
    ) -> RouteResult:
        """`at_least`: a grade the event is routed under at the least (a backfill: the person's
        grade now, stricter than what an old AddressProtectionChange granted then)."""
        envelope = record["envelope"]
        kind = envelope["changeKind"]
        carried = envelope["addressProtection"]
        granted = record["protection"] if event_type == "AddressProtectionChange" and kind == "new" else None
        protection = granted or stricter(state.protection, carried)
        effective = stricter(protection, carried)
        if at_least != "ugradert":
            effective = stricter(effective, at_least)
        birth_date = record["birthDate"] if event_type == "Birth" and kind == "new" else state.birth_date
        if protection != state.protection or birth_date != state.birth_date:
            result = RouteResult(PersonState(protection, birth_date, *state[2:]))
        else:
            result = RouteResult(state)

        # Purges first, so a subscriber deletes the address before anything else arrives. Each names
        # the protection change that caused it; when another event revealed the grade first, the
        # change's own purges follow when it comes through (docs/architecture.md, "Purge").
        is_change = event_type == "AddressProtectionChange" and kind != "annulment"
        purged: list[str] = []
        if protection != state.protection:
            purged = self._purges(result, state.protection, protection, envelope, person, state.received, is_change)
        if is_change and state.untied:
            # The change an earlier event revealed: a purge tied to it for each subscription purged
            # then, while the grade still takes the address from it (never to one that held none).
            for sub_id in sorted(state.untied - set(purged)):
                entry = self.index.entries.get(sub_id)
                if entry is not None and _loses_address("ugradert", protection, entry):
                    result.deliveries.append(self._purge(entry, envelope, person, protection, True))
            result.state = result.state._replace(untied=frozenset())
        elif purged and not is_change:
            result.state = result.state._replace(untied=result.state.untied | set(purged))

        if kind in ("correction", "annulment"):
            if original_recipients is None:
                result.unknown_original = True
                return result
            targets = [self.index.entries[s] for s in original_recipients if s in self.index.entries]
            targets = [e for e in targets if event_type in e.grants and change_kind_ok(e, kind)]
        else:
            targets = [
                e
                for e in self.index.candidates(
                    event_type, envelope["kommunenummer"], national_only=is_strict(effective)
                )
                if e.unconditional or self._matches(e, event_type, record, result.state)
            ]
        if effective == "fortrolig" or is_strict(effective):  # corrections too go only where the grade allows
            targets = [e for e in targets if may_receive(effective, e.public_body, e.kommuner is None)]
        if not targets:
            return result
        cloudevent = self._cloudevent(event_type, envelope, person)
        if is_strict(effective):
            cloudevent["source"] = NEUTRAL_SOURCE
        delivery = delivery_writer(envelope["id"], person, cloudevent, "event")
        for entry in targets:
            data = project_data(record, entry.grants[event_type], withheld(event_type, effective, entry.public_body))
            result.deliveries.append(delivery(entry, data))
            result.recipients.append(entry.id)
        if not result.state.received.issuperset(result.recipients):
            state = result.state
            result.state = state._replace(received=state.received.union(result.recipients))
        return result

    def _purges(
        self,
        result: RouteResult,
        previous: str,
        protection: str,
        envelope: dict,
        person: str,
        received: frozenset[str],
        is_change: bool,
    ) -> list[str]:
        """Purge each subscription in `received` that loses the address from `previous` to `protection`."""
        purged = []
        for sub_id in sorted(received):
            entry = self.index.entries.get(sub_id)
            if entry is not None and _loses_address(previous, protection, entry):
                result.deliveries.append(self._purge(entry, envelope, person, protection, is_change))
                purged.append(sub_id)
        return purged

    # --- predicates -----------------------------------------------------------------------

    def _matches(self, entry: Entry, event_type: str, record: dict, state: PersonState) -> bool:
        predicates = entry.predicates
        envelope = record["envelope"]
        if not change_kind_ok(entry, envelope["changeKind"]):
            return False
        if predicates.move_scope is not None and event_type == "Move" and not _move_scope_ok(entry, record):
            return False
        age = predicates.age_at_event
        if age is not None:
            years = _age(
                state.birth_date or birth_date_from_number(envelope["person"], envelope["time"].date()),
                envelope["time"].date(),
            )
            if (
                years is None
                or (age.min_years is not None and years < age.min_years)
                or (age.max_years is not None and years > age.max_years)
            ):
                return False
        return True

    # --- output ---------------------------------------------------------------------------

    def _cloudevent(self, event_type: str, envelope: dict, person: str) -> dict:
        """The CloudEvent attributes every recipient of the event gets; each adds its own `data`."""
        cloudevent = {
            "specversion": "1.0",
            "id": envelope["id"],
            "source": envelope["source"],
            "type": envelope["type"],
            "time": envelope["time"],  # orjson writes it as isoformat() would, in a third of the time
            "subject": person,
            "datacontenttype": "application/json",
            "dataschema": self._dataschema[event_type],
            "changekind": envelope["changeKind"],
        }
        if envelope["correctsEventId"]:
            cloudevent["correctseventid"] = envelope["correctsEventId"]
        if self.backfill:
            cloudevent["backfill"] = "true"
        return cloudevent

    def _purge(self, entry: Entry, envelope: dict, person: str, protection: str, is_change: bool) -> Delivery:
        purge_id = f"{envelope['id']}-purge"
        cloudevent = {
            "specversion": "1.0",
            "id": purge_id,
            "source": "urn:no:samband:router",
            "type": PURGE_TYPE,
            "time": envelope["time"],
            "subject": person,
            "datacontenttype": "application/json",
            # The AddressProtectionChange that caused it or, before that has come through, the event
            # that revealed the new grade.
            ("protectionchangeid" if is_change else "protectionrevealedby"): envelope["id"],
        }
        # The new grade rides along in the delivery record (never in the event a subscriber gets), so the
        # delivery stage knows it before the router's state write lands: agents/delivery/egress.py.
        tail = b'},"kind":"purge","protection":' + orjson.dumps(protection) + b"}"
        return delivery_writer(purge_id, person, cloudevent, "purge", tail)(entry, {"delete": "address"})


def delivery_writer(
    event_id: str, person: str, cloudevent: dict, kind: str, tail: bytes | None = None
) -> Callable[[Entry, dict], Delivery]:
    """The delivery records of one event: (subscription, data) -> Delivery whose value is the JSON of
    {"idempotency_key": "<event id>.<subscription id>", "subscription", "person",
    "event": {**cloudevent, "data": data}, "kind"} (docs/architecture.md). The parts every recipient
    shares are serialised once; subscription ids are [a-z0-9-], safe to place unescaped."""
    head = (
        b'{"idempotency_key":' + orjson.dumps(event_id)[:-1] + b"."
    )  # the id's closing quote follows the subscription
    middle = (
        b'","person":'
        + orjson.dumps(person)
        + b',"event":'
        + orjson.dumps(cloudevent, default=_json_value)[:-1]
        + b',"data":'
    )
    tail = tail or _TAILS[kind]
    person_key = b"/" + person.encode()

    def delivery(entry: Entry, data: dict) -> Delivery:
        sub = entry.id_bytes
        value = b"".join((head, sub, b'","subscription":"', sub, middle, orjson.dumps(data, default=_json_value), tail))
        return Delivery(entry.id, sub + person_key, value)

    return delivery


_TAILS = {kind: b'},"kind":"%s"}' % kind.encode() for kind in ("event", "purge")}


def _loses_address(previous: str, new: str, entry: Entry) -> bool:
    public = entry.public_body
    return bool(withheld("Move", new, public)) and not withheld("Move", previous, public)


def change_kind_ok(entry: Entry, kind: str) -> bool:
    allowed = entry.predicates.change_kind
    return allowed is None or kind in allowed


def _move_scope_ok(entry: Entry, record: dict) -> bool:
    allowed = entry.predicates.move_scope
    previous = (record.get("previousAddress") or {}).get("kommunenummer")
    new = (record.get("newAddress") or {}).get("kommunenummer")
    if entry.kommuner is None:
        scopes = {"within"} if record["scope"] == "withinKommune" else {"into", "outOf"}
    else:
        scopes = {scope_for(previous, new, k) for k in entry.kommuner}
    return bool(scopes.intersection(allowed))


def _age(birth: date | None, at: date) -> int | None:
    if birth is None:
        return None
    return at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))


def birth_date_from_number(number: str, at: date) -> date | None:
    """Birth date read from the identity number, the latest century that puts it before `at`.

    Only a fallback for persons whose Birth event the bus has not seen: the century is not
    encoded reliably (docs/domain.md §1), so a person over 100 may be read as a child.
    """
    try:
        identity = parse_identity(number)
    except InvalidIdentity:
        return None
    for century in (2000, 1900):
        try:
            born = date(century + identity.year_2digits, identity.month, identity.day)
        except ValueError:
            continue
        if born <= at:
            return born
    return None


def project_data(record: dict, grant: Grant, hidden: frozenset[str]) -> dict:
    data: dict = {}
    if grant.envelope:
        envelope = record["envelope"]
        data["envelope"] = {f: envelope[f] for f in grant.envelope if f"envelope.{f}" not in hidden}
    for name in grant.payload:
        if name not in hidden:
            data[name] = record.get(name)
    return data


def _json_value(value):
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
