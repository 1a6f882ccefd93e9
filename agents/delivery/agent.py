"""The delivery agent: `samband-deliveries` in, signed webhooks or Kafka records out (docs/delivery.md).

One agent reads two co-partitioned topics with the same key `<subscription>/<person>`:
- `samband-deliveries`: a new delivery joins the end of its (subscription, person) queue in
  the `delivery-pending` table and, if it is the head, is offered to the dispatcher;
- `samband-delivery-outcomes`: an attempt's result for a head; the agent applies it
  (pending.decide): delivered (ledger), dead-lettered (`samband-deadletter` + ledger),
  retried later, or held (410: subscription disabled), and offers the next head.
The table changelog, ledger and dead letters are flushed before offsets commit, so a
crash loses nothing; attempts in flight at a crash go out again with the same webhook-id.
"""

from __future__ import annotations

import json
import time

import orjson
import structlog
from aiokafka import AIOKafkaConsumer

from agents import metrics, tracing
from agents.app import app
from agents.delivery import pending
from agents.delivery.dispatcher import Dispatcher, subscription_of
from agents.delivery.ledger import ledger_key, ledger_record
from agents.delivery.target import TargetError, parse_target
from agents.delivery.topic_reader import read_topic
from agents.delivery.topics import delivery_topics
from agents.config import bootstrap_servers
from agents.config import get_settings
from connectors.api import Outcome
from connectors.dead_letters import DeadLetter
from schemas.registry import registry_from_settings

log = structlog.get_logger(__name__)

_raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
topics = delivery_topics(app.conf.id)
inbox = app.topic(topics.deliveries, topics.outcomes, internal=True, **_raw)
outcomes_topic = app.topic(topics.outcomes, **_raw)
status_topic = app.topic(topics.status, internal=True, compacting=True, partitions=1, **_raw)
ledger_topic = app.topic(topics.ledger, internal=True, compacting=True, **_raw)
deadletter_topic = app.topic(topics.deadletter, internal=True, **_raw)
pending_table = app.Table("delivery-pending", key_type=str)  # JSON values, see agents.delivery.pending

# Headers of a delivery record worth keeping with the pending entry (and in its dead letter).
KEPT_HEADERS = ("traceparent", "samband-source", "samband-ingested-at")


async def _report(key: str, entry: dict, outcome: Outcome) -> None:
    value = {
        "idempotency_key": entry["key"],
        "status": outcome.status,
        "reason": outcome.reason,
        "http_status": getattr(outcome, "http_status", None),  # webhook outcomes only
        "retry_after": getattr(outcome, "retry_after", None),
    }
    await outcomes_topic.send(key=key.encode(), value=orjson.dumps(value))


async def _save_status(sub: str, status: dict) -> None:
    await status_topic.send(key=sub.encode(), value=json.dumps(status).encode())


async def _write_topic(topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
    """A Kafka subscriber's record, through the worker's producer (acks=all); returns once acknowledged."""
    sent = await app.producer.send(topic, key, value, None, None, headers)
    await sent


dispatcher = Dispatcher(_report, _save_status, {"topic_writer": _write_topic, "schema_registry": registry_from_settings(get_settings())})


@app.agent(inbox)
async def deliver(stream):
    async for event in stream.events():
        key = event.key.decode()
        now = time.time()
        if event.message.topic == topics.deliveries:
            await _accept(key, event, now)
        else:
            await _apply(key, orjson.loads(event.value), now)


async def _accept(key: str, event, now: float) -> None:
    message = event.message
    metrics.event_in(message.topic)
    try:
        record = orjson.loads(event.value)
        idempotency_key = record["idempotency_key"]
    except (ValueError, KeyError, TypeError):
        dead = DeadLetter("delivery.malformed", "delivery record is not JSON with an idempotency_key", "deliver",
                          message.topic, message.partition, message.offset, subscription_of(key))
        await deadletter_topic.send(key=event.key, value=event.value, headers=dead.headers(message.headers or []))
        return
    headers = [[k, v.decode()] for k, v in (message.headers or []) if k in KEPT_HEADERS]
    entry = pending.new_entry(idempotency_key, event.value.decode(), headers, [message.topic, message.partition, message.offset], now)
    state = pending.append(pending_table.get(key), entry)
    if state is None:
        return  # accepted before (the record was read again after a restart)
    pending_table[key] = state
    if len(state["queue"]) == 1:
        dispatcher.offer(key, entry)


async def _apply(key: str, outcome: dict, now: float) -> None:
    sub = subscription_of(key)
    target = dispatcher.targets.get(sub)
    schedule = target.retry_schedule if target else ()
    state = pending_table.get(key) or {"queue": [], "seen": -1}
    decision = pending.decide(state["queue"], outcome, schedule, now)
    if decision is None:
        return  # an outcome for an entry that is no longer the head: a duplicate attempt
    entry, event_id = decision.entry, _event_id(decision.entry, sub)
    logged = {"idempotency_key": entry["key"], "attempts": entry["attempts"], "reason": decision.reason, **_context(event_id, sub, entry)}
    metrics.delivery(sub, _METRIC_OUTCOME[decision.action])
    if decision.action == pending.DELIVERED:
        await _ledger(event_id, sub, "delivered", entry, outcome)
        if ingested_at := dict(entry["headers"]).get("samband-ingested-at"):  # set by ingest (agents/ingest.py)
            metrics.observe_end_to_end_latency(sub, max(0.0, now - float(ingested_at)))
        log.debug("delivery.delivered", **logged)
    elif decision.action == pending.DEAD:
        await _dead_letter(key, sub, entry, decision.reason, outcome)
        await _ledger(event_id, sub, "dead_lettered", entry, outcome, decision.reason)
        log.warning("delivery.dead_lettered", **logged)
    elif decision.action == pending.HOLD:
        await _ledger(event_id, sub, "held", entry, outcome, decision.reason)
        await dispatcher.disable(sub, decision.reason)
    else:
        log.info("delivery.retry", due_in=round(entry["due"] - now, 3), **logged)
    pending_table[key] = {**state, "queue": decision.queue}
    if decision.queue:
        dispatcher.offer(key, decision.queue[0])
    else:
        dispatcher.done(key)


_METRIC_OUTCOME = {pending.DELIVERED: "delivered", pending.DEAD: "dead_lettered", pending.RETRY: "retry", pending.HOLD: "rejected"}


def _context(event_id: str, sub: str, entry: dict) -> dict:
    """Log context of a delivery: ids and where its record was read, and its trace id (no personal data)."""
    topic, partition, offset = entry["source"]
    trace = tracing.parse(dict(entry["headers"]).get(tracing.HEADER, ""))
    return {"event_id": event_id, "subscription": sub, "topic": topic, "partition": partition, "offset": offset,
            "trace_id": trace.trace_id if trace else None}


def _event_id(entry: dict, sub: str) -> str:
    """The idempotency key is `<event id>.<subscription id>` (docs/architecture.md): no need to parse the record."""
    suffix = f".{sub}"
    if entry["key"].endswith(suffix):
        return entry["key"][: -len(suffix)]
    return orjson.loads(entry["record"])["event"]["id"]


async def _ledger(event_id: str, sub: str, status: str, entry: dict, outcome: dict, reason: str | None = None) -> None:
    value = ledger_record(event_id, sub, status, entry["attempts"], reason, outcome.get("http_status"))
    await ledger_topic.send(key=ledger_key(event_id, sub), value=value)


async def _dead_letter(key: str, sub: str, entry: dict, reason: str, outcome: dict) -> None:
    topic, partition, offset = entry["source"]
    status = outcome.get("http_status")
    message = f"after {entry['attempts']} attempts; last: {outcome.get('reason') or status}"
    dead = DeadLetter(reason, message, "deliver", topic, partition, offset, sub)
    original = [(k, v.encode()) for k, v in entry["headers"]]
    await deadletter_topic.send(key=key.encode(), value=entry["record"].encode(), headers=dead.headers(original))


# --- keeping the dispatcher in step with Kafka ---------------------------------------------


@pending_table.on_recover
async def _offer_recovered_heads() -> None:
    """After a (re)start or rebalance: every head of this worker's partitions goes out again."""
    owned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topics.deliveries}
    for key, state in pending_table.items():
        queue = state["queue"]
        if queue and queue[0]["source"][1] in owned:
            dispatcher.offer(key, queue[0])


@app.on_partitions_revoked.connect
async def _forget_revoked(app, revoked, **kwargs) -> None:
    dispatcher.drop_partitions({tp.partition for tp in revoked if tp.topic == topics.deliveries})


@app.task
async def _run_dispatcher() -> None:
    for topic in (status_topic, ledger_topic, deadletter_topic):
        await topic.maybe_declare()
    await dispatcher.run()


@app.task
async def _follow_subscriptions() -> None:
    """Every worker reads the subscriptions and their delivery status whole, and keeps following."""
    bootstrap = bootstrap_servers()
    # Status first, so a restart does not repeat verification handshakes already passed.
    async for record in read_topic(bootstrap, topics.status):
        await _on_status(record)
    consumer = AIOKafkaConsumer(topics.subscriptions, topics.status, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False, metadata_max_age_ms=5000)
    await consumer.start()
    try:
        async for record in consumer:
            if record.topic == topics.status:
                await _on_status(record)
            else:
                await _on_subscription(record)
    finally:
        await consumer.stop()


async def _on_status(record) -> None:
    sub = record.key.decode()
    await dispatcher.set_status(sub, json.loads(record.value) if record.value is not None else None)


async def _on_subscription(record) -> None:
    sub = record.key.decode()
    if record.value is None:
        await dispatcher.set_target(sub, None)
        return
    try:
        target = parse_target(sub, json.loads(record.value))
    except (TargetError, ValueError) as exc:
        log.error("delivery.subscription_invalid", subscription=sub, reason=TargetError.reason, error=str(exc))
        await dispatcher.set_target(sub, None)
        return
    await dispatcher.set_target(sub, target)
