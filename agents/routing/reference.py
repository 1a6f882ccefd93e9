"""Reference events: data about no person that the bus sends its subscribers itself (docs/reform-day.md).

    record = renumbering_record(date(2024, 1, 1))          # schemas/kommuner.py
    plan = renumbering_announcement(record, subscriptions)
    plan.recipients                                        # subscription ids, in order
    plan.deliveries                                        # Delivery records for the deliveries topic

The catalog's one reference type is `KommuneRenumbering`: a reform day's changes of kommunenummer,
from the repository's kommune data (schemas/data/). `samband subscriptions announce-reform DAY`
writes its deliveries straight to the deliveries topic; from there the delivery stage sends them as any
other (signed, retried on the subscription's schedule, dead-lettered, in the ledger), by every
delivery kind.

- Who gets it: each subscription to the type that is national, or scoped to a kommune the reform
  retired or gave a code to, by any of that kommune's codes: a subscription to today's code counts
  for the codes it had before (as for events, agents/routing/index.py), and one to a code of
  before an earlier reform counts for the codes it became. So announcing a reform before or after
  `samband subscriptions renumber` reaches the same subscriptions. A `change_kind` predicate
  without `new` leaves it out; the other predicates are about persons.
- With what: the fields the subscription was granted of the type. No protection rule applies: it
  names no person.
- Its CloudEvent: `id` a UUID made from the type, the day and the record's content, so
  announcing again gives every subscriber the same idempotency key (`<id>.<subscription>`), and
  one that keeps the keys it has seen takes it once, while a reform's data corrected in a later
  release is a new event; `time` the reform day's midnight (UTC); `subject` `kommuner/<day>`.
- The delivery record's `person`, which keys and orders a subscription's queue in the delivery
  stage, is REFERENCE_PERSON: no person's pseudonym (a pseudonym is hexadecimal). The delivery
  stage leaves such an event's own `subject` as it is (agents/delivery/egress.py).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime

import orjson

from agents.routing.index import RoutingIndex
from agents.routing.router import Delivery, change_kind_ok, delivery_writer, project_data
from agents.subscriptions.model import Subscription
from schemas.catalog import REFERENCE_NAMESPACE, catalog
from schemas.kommuner import older_codes

REFERENCE_PERSON = "reference"
SOURCE = "urn:no:samband:reference"
_IDS = uuid.UUID("6f1c3a52-5d0e-4b8a-9c61-2f4e7d9b0a13")  # the namespace of reference events' ids


@dataclass(frozen=True)
class Announcement:
    event_id: str
    recipients: list[str]  # subscription ids, sorted
    deliveries: list[Delivery]

    def only(self, subscription: str) -> Announcement:
        """The same, to `subscription` alone (none, when it does not get it)."""
        kept = [d for d in self.deliveries if d.subscription == subscription]
        return Announcement(self.event_id, [d.subscription for d in kept], kept)


def is_reference(delivery: dict) -> bool:
    """Whether a parsed delivery record is a reference event's: its type in the reference namespace
    and its `person` REFERENCE_PERSON. (Ingest refuses an event whose type is not in the events
    namespace, so no person's event has such a type.)"""
    event = delivery.get("event")
    return (
        delivery.get("person") == REFERENCE_PERSON
        and isinstance(event, dict)
        and str(event.get("type")).startswith(REFERENCE_NAMESPACE + ".")
    )


def renumbering_announcement(record: dict, subscriptions: list[Subscription]) -> Announcement:
    """The deliveries of a reform's KommuneRenumbering record (schemas.kommuner.renumbering_record)
    to the subscriptions that get it."""
    event_type = "KommuneRenumbering"
    day: date = record["validFrom"]
    codes = {code for change in record["changes"] for code in (change["oldCode"], *change["newCodes"])}
    kommuner = sorted(codes.union(*map(older_codes, codes)))  # a code of before an earlier reform too
    index = RoutingIndex()
    for subscription in subscriptions:
        if event_type in subscription.event_types:
            index.put(subscription)
    candidates = index.candidates(event_type, kommuner)
    targets = sorted((e for e in candidates if change_kind_ok(e, "new")), key=lambda entry: entry.id)
    content = hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()
    event_id = str(uuid.uuid5(_IDS, f"{event_type}/{day.isoformat()}/{content}"))
    subject = catalog().subject(event_type)
    cloudevent = {
        "specversion": "1.0",
        "id": event_id,
        "source": SOURCE,
        "type": subject,
        "time": datetime(day.year, day.month, day.day, tzinfo=UTC),
        "subject": f"kommuner/{day.isoformat()}",
        "datacontenttype": "application/json",
        "dataschema": f"/subjects/{subject}/versions/{catalog().current(event_type).version}",
        "changekind": "new",
    }
    delivery = delivery_writer(event_id, REFERENCE_PERSON, cloudevent, "event")
    # Nothing withheld (the empty set): the record names no person.
    deliveries = [delivery(entry, project_data(record, entry.grants[event_type], frozenset())) for entry in targets]
    return Announcement(event_id, [entry.id for entry in targets], deliveries)
