"""Address protection (adressebeskyttelse, docs/domain.md §4) as pure decisions: the one rule for what leaves the bus.

- strengtFortrolig / strengtFortroligUtland: no address field, no kommunenummer and nothing
  that names a kommune (`envelope.source`, `scope`, `cause`, the CloudEvent `source`) leaves
  the bus; the person's events go only to subscriptions for all kommuner, because a
  kommune-scoped subscription receiving the event would itself reveal the kommune.
- fortrolig: address fields only to public bodies; a non-public body gets the person's events
  only through a subscription for all kommuner, for the same reason.
- ugradert, klientadresse: no restriction.

The router applies this when it routes, and the delivery stage again at the moment each delivery
leaves (agents/delivery/egress.py), under the person's grade then: a retry, a held or paused
delivery and a replayed dead letter never carry more than the grade allows now.

The effective protection of an event is the stricter of the person's state on the bus and
what the event itself carries: an event produced before a protection was granted, still
waiting in the pipeline, is treated with the newer, stricter grading.
"""

from __future__ import annotations

from functools import cache

from schemas.catalog import catalog

LEVELS = ("ugradert", "klientadresse", "fortrolig", "strengtFortrolig", "strengtFortroligUtland")
STRICT = frozenset({"strengtFortrolig", "strengtFortroligUtland"})
_RANK = {level: rank for rank, level in enumerate(LEVELS)}


def stricter(a: str | None, b: str | None) -> str:
    if a == b and a:  # the usual case: the event carries the grading the bus knows
        return a
    a, b = a or "ugradert", b or "ugradert"
    return a if _RANK.get(a, len(LEVELS)) >= _RANK.get(b, len(LEVELS)) else b


def is_strict(protection: str | None) -> bool:
    return protection in STRICT


@cache
def address_paths(event_type: str) -> frozenset[str]:
    """Field paths of the event type classified as address data (addresses and envelope.kommunenummer)."""
    return frozenset(f.path for f in catalog().fields(event_type) if f.classification == "address")


# Fields that are not address data but name the person's kommune or its relation to one.
KOMMUNE_REVEALING = frozenset({"envelope.source", "scope", "cause"})
# The CloudEvent `source` of a strengt fortrolig person's events, instead of the writer's URN.
NEUTRAL_SOURCE = "urn:no:samband"


@cache
def _strict_paths(event_type: str) -> frozenset[str]:
    return address_paths(event_type) | (KOMMUNE_REVEALING & {f.path for f in catalog().fields(event_type)})


def withholdable(event_type: str) -> frozenset[str]:
    """Every field path of the event type some grade withholds from someone: a subscriber's schema
    must let each of them be absent."""
    return _strict_paths(event_type)


def withheld(event_type: str, protection: str, public_body: bool) -> frozenset[str]:
    """Field paths a subscription must not receive for a person with this protection."""
    if protection in STRICT:
        return _strict_paths(event_type)
    if protection == "fortrolig" and not public_body:
        return address_paths(event_type)
    return frozenset()


def may_receive(protection: str, public_body: bool, national: bool) -> bool:
    """Whether a subscription may get the person's events at all: a kommune-scoped one receiving
    them would reveal the kommune of a strengt fortrolig person, or a fortrolig one to a private party."""
    if protection in STRICT or (protection == "fortrolig" and not public_body):
        return national
    return True


def purge_needed(previous: str, new: str, public_body: bool) -> bool:
    """Whether a subscription that holds the person's address must delete it after a change."""
    return bool(withheld("Move", new, public_body)) and not withheld("Move", previous, public_body)


def scrub_address(event_type: str, record: dict) -> dict:
    """A copy of the record without any address data: for dead letters of protected persons."""
    envelope = {**record["envelope"], "kommunenummer": []}
    scrubbed = {**record, "envelope": envelope}
    for path in address_paths(event_type):
        if not path.startswith("envelope."):
            scrubbed[path] = None
    return scrubbed
