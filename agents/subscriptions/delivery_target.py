"""How a subscription's deliveries leave the bus: the `delivery` object, with `kind` saying which.

    delivery: {kind: webhook, url: https://..., secret_ref: env:BERGEN_HS_SECRET, mode: structured}
    delivery: {kind: kafka, topic: bergen-skole-events}

The webhook settings are the webhook sink's own (connectors.webhook.config.WebhookConfig);
both kinds take the delivery agent's retry schedule and pause switch (agents/delivery/target.py
reads the same object).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.webhook.config import WebhookConfig


class DeliveryControl(BaseModel):
    # Seconds to wait before each retry; the delivery agent's default when absent.
    retry_schedule: list[Annotated[float, Field(ge=0)]] | None = None
    # Paused: events are kept, in order, and delivered once it is resumed.
    paused: bool = False


class WebhookTarget(WebhookConfig, DeliveryControl):
    kind: Literal["webhook"]


class KafkaTarget(DeliveryControl):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["kafka"]
    topic: str = Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")


DeliveryTarget = Annotated[WebhookTarget | KafkaTarget, Field(discriminator="kind")]
