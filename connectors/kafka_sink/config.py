"""A Kafka subscriber's delivery settings (the `delivery` part of a subscription with kind `kafka`).

    delivery: {kind: kafka}      # records go to the bus's topic <SAMBAND_SUBSCRIBER_TOPIC_PREFIX><id>

The topic is not chosen by the subscription: a named topic could be one of the bus's own or
another subscriber's. The bus names it from the subscription id (`subscriber_topic`), and the
projection schemas come from the subscription's `fields`.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from connectors.api import ConnectorConfig


class KafkaSinkConfig(ConnectorConfig):
    # Writes in flight, each of up to KafkaSink.max_batch persons' heads.
    max_concurrency: int = Field(8, ge=1, le=256)
    # Seconds to wait for the broker's acknowledgement (acks=all) before the attempt counts as failed.
    timeout: float = Field(10.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _no_topic(cls, data):
        if isinstance(data, dict) and "topic" in data:
            raise ValueError(
                "topic cannot be chosen: a Kafka subscription's records go to its own topic, "
                "the subscriber topic prefix followed by the subscription id"
            )
        return data


def subscriber_topic(prefix: str, subscription: str) -> str:
    """The one topic a Kafka subscription's records go to (the prefix is SAMBAND_SUBSCRIBER_TOPIC_PREFIX,
    which cannot name a bus topic)."""
    return prefix + subscription
