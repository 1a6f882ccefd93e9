"""Address protection (adressebeskyttelse, NORWAY.md §5) as pure decisions.

- strengtFortrolig / strengtFortroligUtland: no address field and no kommunenummer leaves
  the bus; the person's events go only to subscriptions for all kommuner, because a
  kommune-scoped subscription receiving the event would itself reveal the kommune.
- fortrolig: address fields only to public bodies.
- ugradert, klientadresse: no restriction.

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


def withheld(event_type: str, protection: str, public_body: bool) -> frozenset[str]:
    """Field paths a subscription must not receive for a person with this protection."""
    if protection in STRICT or (protection == "fortrolig" and not public_body):
        return address_paths(event_type)
    return frozenset()


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
