"""What a delivery carries at the moment it leaves the bus, whenever that is.

A delivery record (docs/architecture.md) was projected by the router under the person's grade
then. It may leave much later: a retry, a queue held for a paused or unverified subscription, a
dead letter replayed after the person was granted address protection. So every delivery, the
first attempt included, passes `Egress.outgoing` on its way to the sink:

- the protection rule (schemas/protection.py) is applied again under the person's grade
  now: withheld fields leave `data`, a strengt fortrolig person's `source` is neutral, and a
  subscription that may no longer get the person at all gets nothing (the delivery is refused
  with `protection.withheld`: dead-lettered, sealed, and withheld again if replayed);
- `subject` becomes the subscription's own pseudonym of the person: HMAC of the subscription id
  and the bus's pseudonym under SAMBAND_PSEUDONYM_KEY, stable for that subscription, unlinkable
  across subscriptions. The bus's own pseudonym stays in keys, logs and the record's `person`.
  A reference event (a reform's kommune renumbering) names no person: it keeps its own `subject`,
  and no grade applies to it. What makes a delivery one is agents/routing/reference.py's
  `is_reference`: its `person` and its type, which no person's event can have.

`Grades` is each person's grade now: the router's person state (`<app id>-router-persons`,
followed by the delivery stage), and, earlier than that state is written, the grade a purge
record carries. Only persons with a grade other than ugradert are kept.
"""

from __future__ import annotations

import hashlib
import hmac

import orjson

from agents.routing.reference import is_reference
from agents.routing.router import PURGE_TYPE, PersonState
from schemas.catalog import EVENTS_NAMESPACE
from schemas.protection import NEUTRAL_SOURCE, is_strict, may_receive, stricter, withheld

_EVENT_PREFIX = EVENTS_NAMESPACE + "."


class Grades:
    def __init__(self) -> None:
        self._of: dict[str, str] = {}

    def of(self, person: str) -> str:
        return self._of.get(person, "ugradert")

    def set(self, person: str, grade: str) -> None:
        if grade == "ugradert":
            self._of.pop(person, None)
        else:
            self._of[person] = grade

    def apply_state(self, key: bytes, value: bytes | None) -> None:
        """A record of the router's person state; a malformed one raises (bus/malformed.py),
        and the caller then treats the person as strengt fortrolig."""
        self.set(key.decode(), "ugradert" if value is None else PersonState.from_json(value).protection)

    def learn_from_purge(self, person: str, grade: str) -> None:
        """A purge shows a grade at least this strict before the router's state write lands."""
        self.set(person, stricter(self.of(person), grade))


class Egress:
    def __init__(self, grades: Grades, pseudonym_key: bytes):
        self.grades = grades
        self._key = pseudonym_key
        self._keyed: dict[str, hmac.HMAC] = {}  # subscription -> HMAC state after "<subscription>/"

    def subject(self, subscription: str, person: str) -> str:
        """As subscriber_subject, from the subscription's keyed state made once (a copy costs less than a new HMAC)."""
        keyed = self._keyed.get(subscription)
        if keyed is None:
            keyed = self._keyed[subscription] = hmac.new(self._key, f"{subscription}/".encode(), hashlib.sha256)
        mac = keyed.copy()
        mac.update(person.encode())
        return mac.hexdigest()[:32]

    def outgoing(self, record: str, subscription: str, public_body: bool, national: bool) -> dict | None:
        """The delivery record, parsed, as it may leave now, or None when the subscription may not get it."""
        delivery = orjson.loads(record)
        if not self.project(delivery, public_body, national):
            return None
        if not is_reference(delivery):
            delivery["event"]["subject"] = self.subject(subscription, delivery["person"])
        return delivery

    def project(self, delivery: dict, public_body: bool, national: bool) -> bool:
        """Apply the protection rule to a parsed delivery record under the person's grade now, in
        place; False when the subscription may not get the person at all. Also used by `dlq
        replay` before a dead letter goes back to the deliveries topic."""
        event = delivery["event"]
        if delivery.get("kind") == "purge" or event.get("type") == PURGE_TYPE or is_reference(delivery):
            return True
        grade = self.grades.of(delivery["person"])
        if not may_receive(grade, public_body, national):
            return False
        hidden = withheld(event["type"].removeprefix(_EVENT_PREFIX), grade, public_body)
        data = event.get("data")
        if hidden and isinstance(data, dict):
            event["data"] = _without(data, hidden)
        if is_strict(grade):
            event["source"] = NEUTRAL_SOURCE
        return True


def subscriber_subject(pseudonym_key: bytes, subscription: str, person: str) -> str:
    """The subscription's own pseudonym of the person (the bus's pseudonym `person`)."""
    return hmac.new(pseudonym_key, f"{subscription}/{person}".encode(), hashlib.sha256).hexdigest()[:32]


def _without(data: dict, hidden: frozenset[str]) -> dict:
    kept = {k: v for k, v in data.items() if k not in hidden}
    envelope = kept.get("envelope")
    if isinstance(envelope, dict):
        kept["envelope"] = {k: v for k, v in envelope.items() if f"envelope.{k}" not in hidden}
    return kept
