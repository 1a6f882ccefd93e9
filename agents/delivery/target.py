"""Where and how a subscription's deliveries go: the `delivery` object of a subscription.

    {"id": "bergen-helsestasjon", ...,
     "delivery": {"kind": "webhook", "url": "https://...", "secret_ref": "env:BERGEN_HS_SECRET",
                  "retry_schedule": [10, 30, 60, ...], "paused": false}}
    {"id": "stavanger-gebyr", ..., "delivery": {"kind": "kafka"}}
    {"id": "alta-bibliotek", ..., "delivery": {"kind": "files", "max_age_s": 60}}

`kind` names a delivery kind (an entry point in `samband.delivery_kinds`: connectors.api);
everything but `kind`, `retry_schedule`, `paused` and `windows` is that kind's own config. The
delivery stage owns `retry_schedule` (the wait in seconds before each retry; when it is used up
the event is dead-lettered), `paused` and `windows` (agents/subscriptions/windows.py), for every
kind alike.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import TypeAdapter, ValidationError

from agents.config import Settings, webhook_allow_list
from agents.subscriptions.windows import Window
from bus.topics import pull_topic_prefix
from connectors.api import ConfigError, ConnectorConfig, Sink, Subscriber, delivery_kinds

# Altinn Events' schedule: 10 s, 30 s, 1 m, 5 m, 10 m, 30 m, 1 h, 3 h, 6 h, 12 h, 12 h.
DEFAULT_RETRY_SCHEDULE = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0, 43200.0)
CONTROL_FIELDS = ("kind", "retry_schedule", "paused", "windows")


_WINDOWS = TypeAdapter(list[Window])


class TargetError(ValueError):
    """A subscription's delivery settings are invalid; the message names fields, never values."""

    reason = "subscription.delivery_invalid"


@dataclass(frozen=True)
class Target:
    subscriber: Subscriber
    kind: str
    config: ConnectorConfig  # the kind's own config (the `delivery` object less the control fields)
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    paused: bool = False
    windows: tuple[Window, ...] = ()  # when it takes deliveries; none: always
    # What the protection rule asks of the subscription when a delivery leaves (agents/delivery/egress.py);
    # unknown: the strictest reading.
    public_body: bool = False
    national: bool = False

    @property
    def subscription(self) -> str:
        return self.subscriber.id

    @property
    def sink_class(self) -> type[Sink]:
        return delivery_kinds()[self.kind]

    @cached_property  # asked for every delivery (Dispatcher.is_active)
    def fingerprint(self) -> str:
        """Identifies the endpoint (the kind's `Sink.endpoint`): a change means a new verification handshake."""
        text = json.dumps([self.kind, self.sink_class.endpoint(self.config, self.subscription)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def bus_lends(settings: Settings) -> dict[str, Any]:
    """What the bus lends every delivery kind's sink from its settings (connectors.api.Context.extras);
    the delivery stage adds its Kafka writers and the schema registry."""
    return {
        "webhook_allow": webhook_allow_list(settings),
        "secrets_dir": settings.secrets_dir,
        "subscriber_topic_prefix": settings.subscriber_topic_prefix,
        "pull_topic_prefix": pull_topic_prefix(settings.app_id),
        "files_root": settings.files_outbound_dir,
        "files_quota_bytes": settings.files_outbound_quota_bytes,
    }


def kind_config(sink_class: type[Sink], delivery: dict) -> ConnectorConfig:
    """The kind's own config from a `delivery` object: everything but the control fields."""
    return sink_class.parse_config({k: v for k, v in delivery.items() if k not in CONTROL_FIELDS})


def parse_target(sub_id: str, subscription: dict, bus: dict[str, Any] | None = None) -> Target:
    """The target of subscription `sub_id` (the record's key in `samband-subscriptions`). With `bus`
    (`bus_lends`), the kind's refusals that depend on this bus's settings are checked too."""
    delivery = subscription.get("delivery") or {}
    if not isinstance(delivery, dict):
        raise TargetError(f"subscription {sub_id}: delivery must be an object")
    kind = delivery.get("kind")
    kinds = delivery_kinds()
    if kind not in kinds:
        raise TargetError(f"subscription {sub_id}: delivery kind {kind!r} is not installed ({', '.join(kinds)})")
    sink_class = kinds[kind]
    schedule = delivery.get("retry_schedule")
    schedule = DEFAULT_RETRY_SCHEDULE if schedule is None else schedule
    if not isinstance(schedule, (list, tuple)) or not all(isinstance(s, (int, float)) and s >= 0 for s in schedule):
        raise TargetError(f"subscription {sub_id}: delivery.retry_schedule must be a list of seconds >= 0")
    try:
        config = kind_config(sink_class, delivery)
    except ConfigError as exc:  # names fields and what is wrong, never values
        problems = "; ".join(f"delivery.{path}: {what}" for path, what in exc.problems)
        raise TargetError(f"subscription {sub_id}: invalid delivery fields: {problems}") from None
    try:
        windows = tuple(_WINDOWS.validate_python(delivery.get("windows") or []))
    except ValidationError as exc:
        where = "; ".join(".".join(str(p) for p in e["loc"]) + f": {e['msg']}" for e in exc.errors())
        raise TargetError(f"subscription {sub_id}: invalid delivery.windows: {where}") from None
    refused = sink_class.refusal(config, sub_id, bus)
    if refused:
        raise TargetError(f"subscription {sub_id}: delivery.{refused}")
    fields = subscription.get("fields") or {}
    return Target(
        Subscriber(sub_id, {str(k): tuple(v) for k, v in fields.items()} if isinstance(fields, dict) else {}),
        kind,
        config,
        tuple(float(s) for s in schedule),
        bool(delivery.get("paused", False)),
        windows,
        public_body=subscription.get("public_body") is True,
        national=subscription.get("kommuner") == "all",
    )
