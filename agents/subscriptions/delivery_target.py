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
from yarl import URL

from connectors.webhook.config import WebhookConfig
from connectors.webhook.network import literal_address

MIN_RETRY_DELAY_S, MAX_RETRY_STEPS = 1.0, 20


class DeliveryControl(BaseModel):
    # Seconds to wait before each retry (at least 1 s, at most 20 steps); the delivery agent's default when absent.
    retry_schedule: list[Annotated[float, Field(ge=MIN_RETRY_DELAY_S)]] | None = Field(None, max_length=MAX_RETRY_STEPS)
    # Paused: events are kept, in order, and delivered once it is resumed.
    paused: bool = False


class WebhookTarget(WebhookConfig, DeliveryControl):
    kind: Literal["webhook"]

    @model_validator(mode="after")
    def _reachable(self):
        """Refused now what the connector would refuse at connect time anyway (connectors/webhook/network.py):
        plain http or a literal address that is not public, unless SAMBAND_WEBHOOK_ALLOW_NETWORKS lists it."""
        from agents.config import webhook_allow_list

        url = URL(self.url)
        host = url.host or ""
        if literal_address(host) is not None or url.scheme != "https":
            refusal = webhook_allow_list().refusal(url.scheme, host)
            if refusal:
                raise ValueError(f"url: {refusal}")
        return self


class KafkaTarget(DeliveryControl):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["kafka"]

    @model_validator(mode="before")
    @classmethod
    def _no_topic(cls, data):
        # A named topic could be one of the bus's own or another subscriber's (docs/delivery.md).
        if isinstance(data, dict) and "topic" in data:
            raise ValueError(
                "topic cannot be chosen: a Kafka subscription's records go to its own topic, "
                "the subscriber topic prefix followed by the subscription id"
            )
        return data


DeliveryTarget = Annotated[WebhookTarget | KafkaTarget, Field(discriminator="kind")]
