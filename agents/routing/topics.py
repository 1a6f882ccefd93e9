"""Names of the bus's topics (docs/architecture.md), all prefixed with the app id."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BusTopics:
    ingest: str
    events: str
    deadletter: str
    subscriptions: str
    deliveries: str
    audit: str


def bus_topics(app_id: str) -> BusTopics:
    return BusTopics(
        ingest=f"{app_id}-ingest",
        events=f"{app_id}-events",
        deadletter=f"{app_id}-deadletter",
        subscriptions=f"{app_id}-subscriptions",
        deliveries=f"{app_id}-deliveries",
        audit=f"{app_id}-audit",
    )
