"""Per-subscription delivery health, read from Kafka alone (so it works from any machine).

    rows = await subscription_health(bootstrap, app_id)   # list[SubscriptionHealth], by id

Read, all topics prefixed with the app id:
- `-subscriptions`: the subscriptions; `delivery.paused`; delivery settings the delivery stage
  cannot use (agents/delivery/target.py refuses them) make the subscription `disabled`;
- `-delivery-status`: verification, `disabled_reason` after a 410 Gone, and `suspended`
  (`{"since", "reason"}`) while the subscription's breaker is open;
- `-delivery-pending` (agents/delivery/queues.py): per (subscription, person) the queues that
  wait (subscription not active) or are being retried; a queue whose head goes out at once is
  not stored, so `pending` counts deliveries held back, not those in flight. The **retry
  backlog** is every queued delivery behind a head that has failed at least once (the head
  included), so it grows while a subscriber fails;
- `-delivery-outcomes` (the failed attempts) of the last `OUTCOME_WINDOW` seconds: those since the
  subscription's last successful delivery (`consecutive_failures`) and since when (`failing_since`);
- `-delivery-ledger`: the last successful delivery, and dead letters not delivered since;
- `-deadletter`: dead letters of the delivery stage, per subscription.

State, first that applies: `disabled`, `paused`, `suspended` (its breaker is open: the endpoint
is probed, not sent every delivery; agents/delivery/breaker.py), `failing`
(agents.alerts.policy.is_failing: the alerts' own rule), `outside_window` (no delivery window
of its is open: deliveries wait until `window_opens`; agents/subscriptions/windows.py), `active`. Only ids, counts, reason codes and times: no personal data.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import ConsumerRecord

from agents.alerts.policy import DeliveryHealth, is_failing
from agents.delivery.dispatcher import subscription_of
from agents.delivery.ledger import latest_entries
from agents.delivery.pending import Behind, behind_state, stored_state
from agents.delivery.target import TargetError, parse_target
from agents.subscriptions import windows
from bus.malformed import json_object
from bus.reading import read_latest, read_topic
from bus.topics import topic_names
from connectors.dead_letters import DeadLetter

OUTCOME_WINDOW = 3600.0  # seconds of attempt outcomes read for the failure streak
STATES = ("active", "paused", "outside_window", "failing", "suspended", "disabled")


@dataclass
class SubscriptionHealth:
    id: str
    state: str = "active"
    reason: str | None = None  # why disabled or failing: a reason code
    verified: bool = False
    last_delivered: str | None = None  # ISO 8601 UTC of the last successful delivery
    retry_backlog: int = 0
    pending: int = 0  # deliveries held back: waiting for the subscription or behind a retried head
    consecutive_failures: int = 0
    failing_since: str | None = None
    dead_letters: int = 0  # delivery dead letters in the dead-letter topic
    dead_letters_unresolved: int = 0  # of those, events the ledger does not show delivered since
    window_opens: str | None = None  # outside its delivery windows: when the next opens (Norwegian time)


@dataclass
class _Streak:
    failures: int = 0
    since: float | None = None  # epoch seconds of the first failure after the last success
    last_reason: str | None = None


@dataclass
class _Gathered:
    subscriptions: dict[str, dict] = field(default_factory=dict)
    status: dict[str, dict] = field(default_factory=dict)
    pending: dict[str, list[dict]] = field(default_factory=dict)  # queue key -> queue
    ledger: dict[bytes, dict] = field(default_factory=dict)
    dead_letters: dict[str, set[str]] = field(default_factory=dict)  # subscription -> event ids
    outcomes: list[ConsumerRecord] = field(default_factory=list)


def _pending_value(value: bytes) -> list[dict] | Behind:
    """A pending-topic record: a queue's entries, or a subscription's records waiting in the deliveries topic."""
    try:
        return stored_state(value)["queue"]
    except ValueError:
        return behind_state(value)


async def _gather(bootstrap: str, app_id: str, now: float) -> _Gathered:
    topics = topic_names(app_id)

    async def dead_letters() -> dict[str, set[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        async for record in read_topic(bootstrap, topics.deadletter):
            dead = DeadLetter.from_headers(record.headers)
            if dead.stage == "deliver" and dead.subscription:
                found[dead.subscription].add(dead.event_id or f"{record.partition}:{record.offset}")
        return found

    async def outcomes() -> list[ConsumerRecord]:
        return [
            r async for r in read_topic(bootstrap, topics.outcomes, since=now - OUTCOME_WINDOW) if r.key is not None
        ]

    subs, status, pending, ledger, dead, attempts = await asyncio.gather(
        read_latest(bootstrap, topics.subscriptions, json_object),
        read_latest(bootstrap, topics.status, json_object),
        read_latest(bootstrap, topics.pending, _pending_value),
        latest_entries(bootstrap, topics.ledger),
        dead_letters(),
        outcomes(),
    )
    return _Gathered(
        subscriptions=subs,
        status=status,
        pending=pending,
        ledger=ledger,
        dead_letters=dead,
        outcomes=attempts,
    )


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _streaks(outcomes: list[ConsumerRecord], last_delivered: dict[str, str]) -> dict[str, _Streak]:
    """Per subscription, the failed attempts after its last successful delivery, which is the
    ledger's: the attempt log holds failed attempts only (`delivered` ones of older logs are skipped)."""
    streaks: dict[str, _Streak] = defaultdict(_Streak)
    after = {sub: datetime.fromisoformat(at).timestamp() for sub, at in last_delivered.items()}
    attempts = []
    for record in outcomes:
        outcome = json.loads(record.value)
        at = outcome.get("at", record.timestamp) / 1000  # when the attempt was decided (epoch ms)
        attempts.append((at, subscription_of(record.key.decode()), outcome))
    for at, sub, outcome in sorted(attempts, key=lambda a: a[0]):
        if outcome.get("status") == "delivered" or at <= after.get(sub, 0.0):
            continue
        streak = streaks[sub]
        streak.failures += 1
        streak.since = streak.since or at
        streak.last_reason = outcome.get("reason")
    return streaks


def assess(gathered: _Gathered, now: float) -> list[SubscriptionHealth]:
    """One row per subscription (pure: the Kafka reading is done in _gather)."""
    last_delivered: dict[str, str] = {}
    unresolved: dict[str, int] = defaultdict(int)
    for entry in gathered.ledger.values():
        sub = entry["subscription"]
        if entry["status"] == "delivered" and entry["at"] > last_delivered.get(sub, ""):
            last_delivered[sub] = entry["at"]
    streaks = _streaks(gathered.outcomes, last_delivered)
    for sub, event_ids in gathered.dead_letters.items():
        for event_id in event_ids:
            entry = gathered.ledger.get(f"{event_id}/{sub}".encode())
            if entry is None or entry["status"] != "delivered":
                unresolved[sub] += 1
    backlog: dict[str, int] = defaultdict(int)
    pending: dict[str, int] = defaultdict(int)
    for key, queue in gathered.pending.items():
        sub = subscription_of(key)
        if isinstance(queue, Behind):  # left in the deliveries topic until the subscription has room
            pending[sub] += queue.left
            continue
        pending[sub] += len(queue)
        if queue and queue[0].get("attempts", 0) > 0:
            backlog[sub] += len(queue)

    rows = []
    for sub_id, subscription in sorted(gathered.subscriptions.items()):
        status = gathered.status.get(sub_id) or {}
        streak = streaks.get(sub_id, _Streak())
        row = SubscriptionHealth(
            sub_id,
            last_delivered=last_delivered.get(sub_id),
            retry_backlog=backlog[sub_id],
            pending=pending[sub_id],
            consecutive_failures=streak.failures,
            failing_since=_iso(streak.since),
            dead_letters=len(gathered.dead_letters.get(sub_id, ())),
            dead_letters_unresolved=unresolved[sub_id],
        )
        try:
            target = parse_target(sub_id, subscription)
        except TargetError:
            row.state, row.reason = "disabled", TargetError.reason
            rows.append(row)
            continue
        current = status.get("fingerprint") == target.fingerprint
        row.verified = current and bool(status.get("verified"))
        health = DeliveryHealth(
            streak.failures, None if streak.since is None else now - streak.since, streak.last_reason
        )
        if current and status.get("disabled_reason"):
            row.state, row.reason = "disabled", status["disabled_reason"]
        elif target.paused:
            row.state = "paused"
        elif current and isinstance(status.get("suspended"), dict):
            row.state, row.reason = "suspended", status["suspended"].get("reason")
        elif is_failing(health):
            row.state, row.reason = "failing", streak.last_reason
        elif not windows.is_open(target.windows, now):
            opens = windows.next_change(target.windows, now)
            row.state, row.window_opens = "outside_window", None if opens is None else windows.describe(opens)
        rows.append(row)
    return rows


async def subscription_health(bootstrap: str, app_id: str) -> list[SubscriptionHealth]:
    now = time.time()
    return assess(await _gather(bootstrap, app_id, now), now)
