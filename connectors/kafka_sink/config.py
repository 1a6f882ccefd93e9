"""A Kafka subscriber's delivery settings (the `delivery` part of a subscription with kind `kafka`)."""

from __future__ import annotations

from pydantic import Field

from connectors.api import ConnectorConfig


class KafkaSinkConfig(ConnectorConfig):
    # The subscriber's own topic, named by the bus from the subscription id, never by the subscription.
    topic: str = Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")
    # The subscription's granted fields per event type: the projection schema of each record.
    fields: dict[str, list[str]]
    # Produces in flight (one per (subscription, person) head at most).
    max_concurrency: int = Field(8, ge=1, le=256)
    # Seconds to wait for the broker's acknowledgement (acks=all) before the attempt counts as failed.
    timeout: float = Field(10.0, gt=0)
