"""The delivery stage's topics, all prefixed with the app id (docs/architecture.md, docs/delivery.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeliveryTopics:
    deliveries: str  # input: one record per (event, subscription), keyed <subscription>/<person>
    outcomes: str  # the attempt log: one record per attempt, keyed like deliveries (read by status and trace)
    pending: str  # compacted: queues that wait or are retried, keyed like deliveries, one partition per input partition
    status: str  # compacted: per subscription, verified / disabled
    ledger: str  # compacted: per (event, subscription), what became of the delivery
    deadletter: str
    subscriptions: str


def delivery_topics(app_id: str) -> DeliveryTopics:
    return DeliveryTopics(
        deliveries=f"{app_id}-deliveries",
        outcomes=f"{app_id}-delivery-outcomes",
        pending=f"{app_id}-delivery-pending",
        status=f"{app_id}-delivery-status",
        ledger=f"{app_id}-delivery-ledger",
        deadletter=f"{app_id}-deadletter",
        subscriptions=f"{app_id}-subscriptions",
    )
