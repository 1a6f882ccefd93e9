"""How a subscription's deliveries leave the bus: the `delivery` object, with `kind` saying which.

    delivery: {kind: webhook, url: https://..., secret_ref: env:BERGEN_HS_SECRET, mode: structured}
    delivery: {kind: kafka}      # records go to the bus's topic <SAMBAND_SUBSCRIBER_TOPIC_PREFIX><id>

The webhook settings are the webhook sink's own (connectors.webhook.config.WebhookConfig);
both kinds take the delivery agent's retry schedule and pause switch (agents/delivery/target.py
reads the same object).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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

    @model_validator(mode="before")
    @classmethod
    def _no_topic(cls, data):
        # A named topic could be one of the bus's own or another subscriber's (docs/delivery.md).
        if isinstance(data, dict) and "topic" in data:
            raise ValueError("topic cannot be chosen: a Kafka subscription's records go to its own topic, "
                             "the subscriber topic prefix followed by the subscription id")
        return data


DeliveryTarget = Annotated[WebhookTarget | KafkaTarget, Field(discriminator="kind")]
