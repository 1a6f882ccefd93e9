"""The demo's closing checks, as pure functions over what the receivers got.

- `find_leaks`: did any system get a field its subscription does not grant, an address of a
  person whose event document says fortrolig (non-public bodies) or strengt fortrolig
  (anyone), or, for strengt fortrolig, any event at all through a kommune-scoped
  subscription (that alone reveals the kommune)? Protection levels come from the
  generator's documents, not from the bus, so the check does not trust what it checks.
- `delivery_gaps`: of what the router sent each system, what has not reached it yet.

Findings name subscriptions, event ids, rules and field paths, never a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache

from schemas.catalog import catalog

STRICT = frozenset({"strengtFortrolig", "strengtFortroligUtland"})
PURGE_TYPE = "no.samband.purge"


@dataclass(frozen=True)
class ReceivedEvent:
    """One event as a receiving system got it (the CloudEvent's id, short type, subject, data)."""

    subscription: str
    event_id: str
    event_type: str  # catalog type ("Move") or PURGE_TYPE
    subject: str  # person pseudonym
    data: dict


@dataclass(frozen=True)
class Grant:
    """What a subscription may receive: its fields per event type and whether it is a public body."""

    fields: Mapping[str, frozenset[str]]
    public_body: bool
    all_kommuner: bool

    @classmethod
    def of(cls, subscription) -> Grant:
        return cls({t: frozenset(p) for t, p in subscription.fields.items()}, subscription.public_body,
                   subscription.kommuner == "all")


@dataclass(frozen=True)
class Leak:
    subscription: str
    event_id: str
    rule: str  # "unauthorised_field", "unsubscribed_type", "protected_address", "strict_person_in_kommune_scope"
    field: str | None = None


@cache
def _address_paths(event_type: str) -> frozenset[str]:
    return frozenset(f.path for f in catalog().fields(event_type) if f.classification == "address")


def received_paths(data: dict) -> dict[str, object]:
    """The field paths of a delivered `data` object (catalog notation) and their values."""
    paths = {f"envelope.{k}": v for k, v in (data.get("envelope") or {}).items()}
    paths.update({k: v for k, v in data.items() if k != "envelope"})
    return paths


def find_leaks(received: Iterable[ReceivedEvent], grants: Mapping[str, Grant],
               protection_of_event: Mapping[str, str]) -> list[Leak]:
    leaks: list[Leak] = []
    for event in received:
        grant = grants[event.subscription]
        if event.event_type == PURGE_TYPE:
            extra = set(event.data) - {"delete"}
            leaks += [Leak(event.subscription, event.event_id, "unauthorised_field", f) for f in sorted(extra)]
            continue
        granted = grant.fields.get(event.event_type)
        if granted is None:
            leaks.append(Leak(event.subscription, event.event_id, "unsubscribed_type", event.event_type))
            continue
        paths = received_paths(event.data)
        leaks += [Leak(event.subscription, event.event_id, "unauthorised_field", p) for p in sorted(paths) if p not in granted]
        protection = protection_of_event.get(event.event_id, "ugradert")
        if protection in STRICT and not grant.all_kommuner:
            leaks.append(Leak(event.subscription, event.event_id, "strict_person_in_kommune_scope"))
        if protection in STRICT or (protection == "fortrolig" and not grant.public_body):
            leaks += [Leak(event.subscription, event.event_id, "protected_address", p)
                      for p in sorted(_address_paths(event.event_type) & paths.keys()) if paths[p]]
    return leaks


@dataclass(frozen=True)
class Gap:
    subscription: str
    routed: int  # events the router sent the system (its entitlement)
    delivered: int  # of those, received by the system
    dead_lettered: int  # of those, given up on by the bus (in the dead letters, not delivered)
    pending: int  # neither yet: still queued or being retried
    unexpected: int  # received but never routed to it (should be 0)


def delivery_gaps(routed: Mapping[str, set[str]], delivered: Mapping[str, set[str]],
                  dead_lettered: Mapping[str, set[str]]) -> dict[str, Gap]:
    """Per subscription, by event id: routed vs delivered vs dead-lettered vs still pending."""
    gaps = {}
    for sub in sorted(set(routed) | set(delivered)):
        sent, got = routed.get(sub, set()), delivered.get(sub, set())
        dead = (dead_lettered.get(sub, set()) & sent) - got
        gaps[sub] = Gap(sub, len(sent), len(sent & got), len(dead), len(sent - got - dead), len(got - sent))
    return gaps
