"""Address data out of what a strengt fortrolig person's dead letter would keep, read only as far as
the event could be read: a CloudEvent that failed a check after it parsed as JSON.

A decoded catalog record is scrubbed by schemas/protection.py (scrub_address). This is
for input that never became a record: the grade is read from the `addressprotection` attribute
or, for a change of protection, from `data.protection`; if either names strengt fortrolig, the
copy keeps no address field, no kommunenummer, and nothing that names a kommune (`source`,
`scope`, `cause`). Sealed or not, a dead letter then holds no address to leak.
"""

from __future__ import annotations

from functools import cache

from schemas.catalog import catalog

STRICT = frozenset({"strengtFortrolig", "strengtFortroligUtland"})
SCRUBBED_SOURCE = "urn:no:samband:scrubbed"


@cache
def _kommune_revealing_fields() -> frozenset[str]:
    """Payload fields of any event type classified as address data, and the two that name a kommune's relation."""
    names = {
        f.path.split(".")[0]
        for t in catalog().event_types()
        for f in catalog().fields(t)
        if f.classification == "address" and not f.path.startswith("envelope.")
    }
    return frozenset(names | {"scope", "cause"})


def scrub_cloudevent(event: object) -> dict | None:
    """A copy of the CloudEvent without address data if it says its person is strengt fortrolig, else None."""
    if not isinstance(event, dict):
        return None
    data = event.get("data")
    declared = [event.get("addressprotection"), data.get("protection") if isinstance(data, dict) else None]
    if not any(isinstance(grade, str) and grade in STRICT for grade in declared):  # a client may send any JSON
        return None
    scrubbed = {k: v for k, v in event.items() if k != "kommunenummer"}
    scrubbed["source"] = SCRUBBED_SOURCE
    if isinstance(data, dict):
        hidden = _kommune_revealing_fields()
        scrubbed["data"] = {k: v for k, v in data.items() if k not in hidden}
    return scrubbed
