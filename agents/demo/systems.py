"""The sample systems: the subscriptions in deploy/demo/subscriptions, pointed at this run's receivers."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import deploy
from agents.demo.view import SystemRow
from agents.subscriptions.delivery_target import AS_WRITTEN
from agents.subscriptions.files import load_dir
from agents.subscriptions.model import Subscription
from agents.subscriptions.windows import NORWAY, Window

SUBSCRIPTIONS_DIR = Path(deploy.__file__).parent / "demo" / "subscriptions"
MISBEHAVING = "trondheim-pleie-og-omsorg"  # its receiver answers 500 for a while, then recovers
WINDOWED = "stavanger-gebyr"  # takes deliveries only from a moment into the run (a delivery window)
# The life-stage clock of a run (SAMBAND_LIFE_STAGES_SIMULATED_START): the register year is 2024,
# and on this first day of the next kindergarten year its children born by August reach their right.
LIFE_STAGE_DAY = "2025-08-01T07:00:00+02:00"
SCHOOL_COHORT = 2019  # born this year, they start school on LIFE_STAGE_DAY: loaded from a register extract


def load_subscriptions() -> list[Subscription]:
    # As the bus will read them: what depends on settings (the webhook allow-list, the files folder)
    # is the demo worker's, set for the run (run.py), not this process's.
    subs, errors = load_dir(SUBSCRIPTIONS_DIR, context=AS_WRITTEN)
    if errors:
        raise ValueError("invalid demo subscriptions: " + "; ".join(errors))
    return subs


def secret_env(sub: Subscription) -> str:
    """The environment variable named by the subscription's `secret_ref: env:NAME`."""
    return sub.delivery.secret_ref.removeprefix("env:")


def subscriber_topic_prefix(app_id: str) -> str:
    """SAMBAND_SUBSCRIBER_TOPIC_PREFIX of a run: its Kafka subscribers' topics are its own."""
    return f"subscriber.{app_id}."


def kafka_topic(sub: Subscription, app_id: str) -> str:
    """The topic the bus creates for a Kafka subscription and writes its records to."""
    return subscriber_topic_prefix(app_id) + sub.id


def for_this_run(sub: Subscription, receiver_url: str | None) -> Subscription:
    """The subscription with its webhook pointed at the local receiver (other kinds are left as they are)."""
    if sub.delivery.kind != "webhook":
        return sub
    return sub.model_copy(update={"delivery": sub.delivery.model_copy(update={"url": receiver_url})})


def with_window(sub: Subscription, opens: datetime) -> Subscription:
    """The subscription with a delivery window that opens at `opens` (Norwegian time) and lasts 8 hours."""
    local = opens.astimezone(NORWAY).replace(microsecond=0)
    window = Window(start=local.time(), end=(local + timedelta(hours=8)).time())
    return sub.model_copy(update={"delivery": sub.delivery.model_copy(update={"windows": [window]})})


def row(sub: Subscription, outage_seconds: float, window_opens: datetime | None = None) -> SystemRow:
    note = f"500s for {outage_seconds:.0f} s" if sub.id == MISBEHAVING else ""
    if sub.id == WINDOWED and window_opens is not None:
        note = f"window opens {window_opens.astimezone(NORWAY):%H:%M:%S}"
    if sub.delivery.kind == "pull":
        note = "fetches its events"
    if not sub.public_body:
        note = "private operator"
    return SystemRow(sub.id, sub.system.name, sub.delivery.kind, note)
