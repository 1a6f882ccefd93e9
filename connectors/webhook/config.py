"""A webhook subscriber's delivery settings (the `delivery` part of a subscription with kind `webhook`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from connectors.api import ConnectorConfig


class WebhookConfig(ConnectorConfig):
    url: str = Field(pattern=r"^https?://")
    # References, never secrets, naming only the subscription's own (connectors.webhook.secrets).
    secret_ref: str
    # During a rotation: the secret being replaced. Both sign until it is removed.
    previous_secret_ref: str | None = None
    mode: Literal["structured", "binary"] = "structured"
    # In-flight requests, and pooled keep-alive connections, to this subscriber.
    max_concurrency: int = Field(8, ge=1, le=256)
    connect_timeout: float = Field(5.0, gt=0, le=60)
    read_timeout: float = Field(10.0, gt=0, le=60)

    @property
    def secret_refs(self) -> tuple[str, ...]:
        return (self.secret_ref,) if self.previous_secret_ref is None else (self.secret_ref, self.previous_secret_ref)
