"""Where and how a subscription's deliveries go: the `delivery` object of a subscription.

    {"id": "bergen-helsestasjon", ...,
     "delivery": {"kind": "webhook", "url": "https://...", "secret_ref": "env:BERGEN_HS_SECRET",
                  "mode": "structured", "max_concurrency": 8, "connect_timeout": 5, "read_timeout": 10,
                  "retry_schedule": [10, 30, 60, ...], "paused": false}}
    {"id": "stavanger-gebyr", ..., "fields": {"Move": [...], ...},
     "delivery": {"kind": "kafka"}}

Everything but `url` and `secret_ref` (webhook) has a default. A Kafka target's topic is not
chosen by the subscription: it is `subscriber_topic(id)`, the subscriber's own.
`retry_schedule` is the wait in seconds before each retry; when it is used up the event is
dead-lettered. A Kafka target also takes the subscription's `fields`: its projection schemas.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property

from pydantic import ValidationError

from agents.config import get_settings
from connectors.kafka_sink.config import KafkaSinkConfig
from connectors.webhook.config import WebhookConfig
from connectors.webhook.secrets import own_refs

# Altinn Events' schedule: 10 s, 30 s, 1 m, 5 m, 10 m, 30 m, 1 h, 3 h, 6 h, 12 h, 12 h.
DEFAULT_RETRY_SCHEDULE = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0, 43200.0)


class TargetError(ValueError):
    """A subscription's delivery settings are invalid; the message names fields, never values."""

    reason = "subscription.delivery_invalid"


@dataclass(frozen=True)
class Target:
    subscription: str
    sink: WebhookConfig | KafkaSinkConfig
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    paused: bool = False
    # What the protection rule asks of the subscription when a delivery leaves (agents/delivery/egress.py);
    # unknown: the strictest reading.
    public_body: bool = False
    national: bool = False

    @cached_property  # asked for every delivery (Dispatcher.is_active)
    def fingerprint(self) -> str:
        """Identifies the endpoint and its secrets: a change means a new verification handshake."""
        if isinstance(self.sink, KafkaSinkConfig):
            text = json.dumps(["kafka", self.sink.topic])
        else:
            text = json.dumps([self.sink.url, list(self.sink.secret_refs)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def subscriber_topic(sub_id: str, prefix: str | None = None) -> str:
    """The one topic a Kafka subscription's records go to: `prefix` (SAMBAND_SUBSCRIBER_TOPIC_PREFIX
    unless given; it cannot name a bus topic: agents/config.py) and the subscription id."""
    return (get_settings().subscriber_topic_prefix if prefix is None else prefix) + sub_id


def parse_target(sub_id: str, subscription: dict, topic_prefix: str | None = None) -> Target:
    """The target of subscription `sub_id` (the record's key in `samband-subscriptions`); a Kafka
    target's topic has `topic_prefix` (the settings' unless given)."""
    delivery = subscription.get("delivery") or {}
    if not isinstance(delivery, dict):
        raise TargetError(f"subscription {sub_id}: delivery must be an object")
    delivery = dict(delivery)
    kind = delivery.pop("kind", "webhook")
    if kind not in ("webhook", "kafka"):
        raise TargetError(f"subscription {sub_id}: delivery kind {kind!r} is not supported (webhook, kafka)")
    schedule = delivery.pop("retry_schedule", None)
    schedule = DEFAULT_RETRY_SCHEDULE if schedule is None else schedule
    paused = delivery.pop("paused", False)
    if not isinstance(schedule, (list, tuple)) or not all(isinstance(s, (int, float)) and s >= 0 for s in schedule):
        raise TargetError(f"subscription {sub_id}: delivery.retry_schedule must be a list of seconds >= 0")
    try:
        if kind == "kafka":
            if "topic" in delivery:  # written around the validating writers (agents/subscriptions/delivery_target.py)
                raise TargetError(
                    f"subscription {sub_id}: delivery.topic cannot be chosen; "
                    f"a Kafka subscription's records go to its own topic"
                )
            sink = KafkaSinkConfig.model_validate(
                {
                    **delivery,
                    "topic": subscriber_topic(sub_id, topic_prefix),
                    "fields": subscription.get("fields") or {},
                }
            )
        else:
            sink = WebhookConfig.model_validate(delivery)
            refused = secret_ref_problem(sub_id, sink.secret_ref, sink.previous_secret_ref)
            if refused:
                raise TargetError(f"subscription {sub_id}: {refused}")
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        raise TargetError(f"subscription {sub_id}: invalid delivery fields: {fields}") from None
    return Target(
        sub_id,
        sink,
        tuple(float(s) for s in schedule),
        bool(paused),
        public_body=subscription.get("public_body") is True,
        national=subscription.get("kommuner") == "all",
    )


def secret_ref_problem(sub_id: str, secret_ref: str, previous: str | None) -> str | None:
    """Why these refs may not be this subscription's (connectors/webhook/secrets.py), or None."""
    if secret_ref not in own_refs(sub_id) or (previous is not None and previous not in own_refs(sub_id, previous=True)):
        env, file = own_refs(sub_id)
        return f"delivery.secret_ref names a secret that is not the subscription's own: use {env} or {file}"
    return None
