"""One event's path through the bus, read from Kafka, as a timeline: ingested, routed, each
delivery's attempts, dead-lettered, replayed, delivered.

    trace = await trace_event(bootstrap, app_id, event_id)   # EventTrace; trace.found is False if never seen

Read, all topics prefixed with the app id: `-ingest-seen-ids` (when ingest first saw the id),
`-router-records` (which subscriptions the router sent it to; with `-deliveries`, when),
`-delivery-outcomes` (every failed attempt), `-delivery-ledger` (what became of each delivery,
and so its successful attempt), `-deadletter`, and in `-deliveries` the replays of its dead
letters (header `samband-replay-of`). Only ids, times, counts, reason codes and
HTTP statuses: never the event's data (no personal data).
A scan of whole topics: an operator's tool, not a hot path.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from agents.delivery.dispatcher import subscription_of
from agents.delivery.ledger import ledger_for_event
from bus.reading import read_topic
from bus.topics import topic_names
from connectors.dead_letters import DeadLetter


@dataclass
class Attempt:
    at: str
    outcome: str  # delivered | retry | rejected
    reason: str | None
    http_status: int | None


@dataclass
class Delivery:
    subscription: str
    status: str  # delivered | dead_lettered | held | pending
    attempts: int
    at: str | None  # when the ledger recorded the status
    http_status: int | None = None
    reason: str | None = None
    attempt_log: list[Attempt] = field(default_factory=list)
    replays: int = 0  # times a dead letter of it was sent back through delivery


@dataclass
class EventTrace:
    event_id: str
    ingested_at: str | None = None
    routed_at: str | None = None
    routed_to: list[str] | None = None  # None: no routing record (not routed, or routed before records were kept)
    deliveries: list[Delivery] = field(default_factory=list)
    # {"id", "stage", "reason", "subscription", "time", "replayed_at": [times it was replayed]}
    dead_letters: list[dict] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.ingested_at or self.routed_to is not None or self.deliveries or self.dead_letters)

    def as_json(self) -> dict:
        return {"found": self.found, **asdict(self)}


def _iso_ms(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds")


async def _ingested(bootstrap: str, app_id: str, event_id: str) -> str | None:
    wanted, first = event_id.encode(), None
    async for record in read_topic(bootstrap, topic_names(app_id).ingest_seen_ids):
        if record.key == wanted and record.value is not None:
            first = first or datetime.fromtimestamp(int(record.value), UTC).isoformat(timespec="seconds")
    return first


async def _routed(bootstrap: str, app_id: str, event_id: str) -> tuple[str | None, list[str] | None]:
    """When the event was routed, and to whom. The router writes its routing record just after
    the deliveries are acknowledged, and a delivery may already be done by then: the time is that
    of the first delivery record when there is one. To whom: as the latest segment that has the
    event says (a backfill adds its subscription to the record later)."""
    wanted, found = event_id.encode(), (None, None)
    async for record in read_topic(
        bootstrap, topic_names(app_id).router_records
    ):  # segments: {event id: [..]} per batch
        if record.value is not None and wanted in record.value:
            recipients = json.loads(record.value).get(event_id)
            if recipients is not None:
                found = (found[0] if found[0] is not None else record.timestamp, sorted(recipients))
    if found[0] is None:
        return found
    prefix = f"{event_id}."
    async for record in read_topic(bootstrap, topic_names(app_id).deliveries):
        if (
            record.value is not None
            and wanted in record.value
            and record.timestamp < found[0]
            and json.loads(record.value).get("idempotency_key", "").startswith(prefix)
        ):
            found = (record.timestamp, found[1])
    return _iso_ms(found[0]), found[1]


async def _attempts(bootstrap: str, topic: str, event_id: str) -> dict[str, list[Attempt]]:
    prefix = f"{event_id}."
    found: dict[str, list[Attempt]] = defaultdict(list)
    async for record in read_topic(bootstrap, topic):
        if record.key is None or record.value is None:
            continue
        outcome = json.loads(record.value)
        key = outcome.get("idempotency_key", "")
        sub = subscription_of(record.key.decode())
        if (
            key == f"{prefix}{sub}" and outcome["status"] != "delivered"
        ):  # a success is the ledger's (older logs hold them too)
            at = outcome.get("at", record.timestamp)  # the attempt's own time (epoch ms), else when it was written
            found[sub].append(
                Attempt(_iso_ms(at), outcome["status"], outcome.get("reason"), outcome.get("http_status"))
            )
    for attempts in found.values():
        attempts.sort(key=lambda a: a.at)
    return found


async def _dead_letters(bootstrap: str, topic: str, event_id: str) -> list[dict]:
    found = []
    async for record in read_topic(bootstrap, topic):
        dead = DeadLetter.from_headers(record.headers)  # the value is sealed; its event id is a header
        if dead.event_id == event_id:
            found.append(
                {
                    "id": f"{record.partition}:{record.offset}",
                    "stage": dead.stage,
                    "reason": dead.reason,
                    "subscription": dead.subscription,
                    "time": dead.time,
                }
            )
    return found


async def _replays(bootstrap: str, topic: str, event_id: str) -> dict[str, list[str]]:
    """Dead letter id -> when it was replayed (`samband dlq replay` writes it back with its id)."""
    from agents.commands.dlq import REPLAY_HEADER

    prefix, found = f"{event_id}.", defaultdict(list)
    async for record in read_topic(bootstrap, topic):
        replay_of = next((v.decode() for k, v in record.headers if k == REPLAY_HEADER), None)
        if (
            replay_of
            and record.value is not None
            and json.loads(record.value).get("idempotency_key", "").startswith(prefix)
        ):
            found[replay_of].append(_iso_ms(record.timestamp))
    return found


async def trace_event(bootstrap: str, app_id: str, event_id: str) -> EventTrace:
    topics = topic_names(app_id)
    ingested, (routed_at, routed_to), attempts, ledger, dead, replays = await asyncio.gather(
        _ingested(bootstrap, app_id, event_id),
        _routed(bootstrap, app_id, event_id),
        _attempts(bootstrap, topics.outcomes, event_id),
        ledger_for_event(bootstrap, topics.ledger, event_id),
        _dead_letters(bootstrap, topics.deadletter, event_id),
        _replays(bootstrap, topics.deliveries, event_id),
    )
    for letter in dead:
        letter["replayed_at"] = replays.get(letter["id"], [])
    deliveries = []
    for sub in sorted(set(routed_to or ()) | set(ledger) | set(attempts)):
        entry = ledger.get(sub)
        log = attempts.get(sub, [])
        replayed = sum(len(d["replayed_at"]) for d in dead if d["subscription"] == sub)
        if entry is None:
            deliveries.append(Delivery(sub, "pending", len(log), None, attempt_log=log, replays=replayed))
        else:
            if entry["status"] == "delivered":  # the attempt that succeeded, decided when the ledger says
                log = [*log, Attempt(entry["at"], "delivered", None, entry.get("http_status"))]
            # The ledger counts attempts since the last replay; the log holds every attempt.
            count = max(entry["attempts"], len(log))
            deliveries.append(
                Delivery(
                    sub,
                    entry["status"],
                    count,
                    entry["at"],
                    entry.get("http_status"),
                    entry.get("reason"),
                    log,
                    replayed,
                )
            )
    return EventTrace(event_id, ingested, routed_at, routed_to, deliveries, dead)


def format_trace(trace: EventTrace) -> str:
    """A timeline, oldest first, then what became of each delivery."""
    if not trace.found:
        return f"event {trace.event_id}: not found in the bus's topics"
    lines = [f"event {trace.event_id}"]
    lines += [f"  {at:<29} {what}" for at, what in timeline(trace)]
    for d in trace.deliveries:
        replays = f", {d.replays} replay(s)" if d.replays else ""
        lines.append(
            f"  now: {d.subscription}: {d.status} at {d.at or '-'} after {d.attempts} attempt(s){replays}"
            + (f" ({d.reason})" if d.reason else "")
        )
    return "\n".join(lines)


def timeline(trace: EventTrace) -> list[tuple[str, str]]:
    """(time, step), oldest first: ingested, routed, each attempt, dead-lettered, replayed."""
    steps: list[tuple[str, str]] = []
    if trace.ingested_at:
        steps.append((trace.ingested_at, "ingested"))
    if trace.routed_at:
        routed = ", ".join(trace.routed_to) if trace.routed_to else "nobody"
        steps.append((trace.routed_at, f"routed to {routed}"))
    for d in trace.deliveries:
        for number, a in enumerate(d.attempt_log, 1):
            steps.append(
                (a.at, f"{d.subscription}: attempt {number} {a.outcome}" + (f" {a.reason}" if a.reason else ""))
            )
    for dl in trace.dead_letters:
        who = f"{dl['subscription']}: " if dl["subscription"] else ""
        steps.append(
            (dl["time"], f"{who}dead-lettered at stage {dl['stage']} ({dl['reason']}), dead letter {dl['id']}")
        )
        for at in dl["replayed_at"]:
            steps.append((at, f"{who}replayed from dead letter {dl['id']}"))
    return sorted(steps, key=lambda step: _moment(step[0]))


def _moment(at: str) -> datetime:
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        return datetime.max.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
