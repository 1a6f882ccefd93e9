"""A webhook subscriber's delivery settings (the `delivery` part of a subscription with kind `webhook`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from yarl import URL

from connectors.api import ConnectorConfig


class WebhookBatch(BaseModel):
    """CloudEvents batch mode: several events in one signed POST (`application/cloudevents-batch+json`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # `true` is no number of events

    max_events: int = Field(100, ge=1, le=1000, description="events in one request at most")
    max_bytes: int = Field(
        1 << 20, ge=1024, le=10 << 20, description="a request's body at most (an event larger than this goes alone)"
    )
    max_wait_ms: int = Field(50, ge=0, le=10_000, description="how long a request waits for more events to fill it")


class WebhookConfig(ConnectorConfig):
    url: str = Field(pattern=r"^https?://")
    # References, never secrets, naming only the subscription's own (connectors.webhook.secrets).
    secret_ref: str
    # During a rotation: the secret being replaced. Both sign until it is removed.
    previous_secret_ref: str | None = None
    mode: Literal["structured", "binary"] = "structured"
    # None: one event per request. Given: several persons' events per request.
    batch: WebhookBatch | None = None
    # In-flight requests, and pooled keep-alive connections, to this subscriber.
    max_concurrency: int = Field(8, ge=1, le=256)
    connect_timeout: float = Field(5.0, gt=0, le=60)
    read_timeout: float = Field(10.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _no_zone(cls, url: str) -> str:
        # An IPv6 zone (`%25...`) names an interface of the bus's host: nothing a subscriber is reached by.
        if "%" in (URL(url).raw_host or ""):
            raise ValueError("the host may not carry an IPv6 zone (%)")
        return url

    @field_validator("batch")
    @classmethod
    def _batch_is_structured(cls, batch: WebhookBatch | None, info: ValidationInfo) -> WebhookBatch | None:
        if batch is not None and info.data.get("mode", "structured") != "structured":
            raise ValueError("CloudEvents batch mode carries structured events; set mode to structured")
        return batch

    @property
    def secret_refs(self) -> tuple[str, ...]:
        return (self.secret_ref,) if self.previous_secret_ref is None else (self.secret_ref, self.previous_secret_ref)
