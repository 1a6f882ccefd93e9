"""How a subscription's deliveries leave the bus: the `delivery` object, with `kind` saying which.

    delivery: {kind: webhook, url: https://..., secret_ref: env:BERGEN_HS_SECRET, mode: structured}
    delivery: {kind: kafka}      # records go to the bus's topic <SAMBAND_SUBSCRIBER_TOPIC_PREFIX><id>

The webhook settings are the webhook sink's own (connectors.webhook.config.WebhookConfig);
both kinds take the delivery stage's retry schedule and pause switch (agents/delivery/target.py
reads the same object).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from yarl import URL

from connectors.webhook.config import WebhookConfig
from connectors.webhook.network import literal_address

MAX_RETRY_STEPS = 20
# Validation context of a reader that learns what a subscription was, not whether this process
# would accept it (the privacy scan: the bus accepted it under its own settings, e.g. a loopback
# URL the demo's worker allows). The checks that depend on this process's settings are skipped.
AS_WRITTEN = {"as_written": True}


def _as_written(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("as_written"))


class DeliveryControl(BaseModel):
    # Seconds to wait before each retry (at least SAMBAND_RETRY_MIN_SECONDS, 1 s unless set; at most
    # 20 steps); the delivery stage's default when absent.
    retry_schedule: list[float] | None = Field(None, max_length=MAX_RETRY_STEPS)
    # Paused: events are kept, in order, and delivered once it is resumed.
    paused: bool = False

    @field_validator("retry_schedule")
    @classmethod
    def _not_too_soon(cls, schedule: list[float] | None, info: ValidationInfo) -> list[float] | None:
        from agents.config import get_settings

        least = 0.0 if _as_written(info) else get_settings().retry_min_seconds
        if schedule is not None and not all(wait >= least and math.isfinite(wait) for wait in schedule):  # (NaN too)
            raise ValueError(f"each wait must be at least {least:g} s (SAMBAND_RETRY_MIN_SECONDS)")
        return schedule


class WebhookTarget(WebhookConfig, DeliveryControl):
    kind: Literal["webhook"]

    @model_validator(mode="after")
    def _reachable(self, info: ValidationInfo):
        """Refused now what the connector would refuse at connect time anyway (connectors/webhook/network.py):
        plain http or a literal address that is not public, unless SAMBAND_WEBHOOK_ALLOW_NETWORKS lists it."""
        from agents.config import webhook_allow_list

        if _as_written(info):
            return self
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
