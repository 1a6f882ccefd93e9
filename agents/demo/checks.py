"""The demo's closing delivery check, a pure function over what the receivers got:
`delivery_gaps`, of what the router sent each system, what has not reached it yet.
The leak check is `samband privacy scan` (agents/privacy_scan.py), run by the report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
class Gap:
    subscription: str
    routed: int  # events the router sent the system (its entitlement)
    delivered: int  # of those, received by the system
    dead_lettered: int  # of those, given up on by the bus (in the dead letters, not delivered)
    pending: int  # neither yet: still queued or being retried
    unexpected: int  # received but never routed to it (should be 0)


def delivery_gaps(
    routed: Mapping[str, set[str]], delivered: Mapping[str, set[str]], dead_lettered: Mapping[str, set[str]]
) -> dict[str, Gap]:
    """Per subscription, by event id: routed vs delivered vs dead-lettered vs still pending."""
    gaps = {}
    for sub in sorted(set(routed) | set(delivered)):
        sent, got = routed.get(sub, set()), delivered.get(sub, set())
        dead = (dead_lettered.get(sub, set()) & sent) - got
        gaps[sub] = Gap(sub, len(sent), len(sent & got), len(dead), len(sent - got - dead), len(got - sent))
    return gaps
