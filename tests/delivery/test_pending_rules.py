"""The per-(subscription, person) queue rules, without Kafka: order, retries, dead letters, re-reads."""

from __future__ import annotations

import pytest

from agents.delivery import pending
from agents.delivery.target import DEFAULT_RETRY_SCHEDULE, TargetError, parse_target
from connectors.kafka_sink.config import subscriber_topic


def _entry(key: str, offset: int) -> dict:
    return pending.new_entry(key, "{}", [], ["t-deliveries", 0, offset], now=100.0)


def _queued(*keys: str) -> dict:
    state = None
    for offset, key in enumerate(keys):
        state = pending.append(state, _entry(key, offset))
    return state


def test_a_record_read_again_after_a_crash_is_not_queued_twice():
    state = _queued("a", "b")
    assert pending.append(state, _entry("a", 0)) is None
    assert pending.append({**state, "queue": []}, _entry("b", 1)) is None  # even once delivered
    assert [e["key"] for e in pending.append(state, _entry("c", 2))["queue"]] == ["a", "b", "c"]


def test_an_outcome_for_anything_but_the_head_is_ignored():
    assert (
        pending.decide(_queued("a", "b")["queue"], {"idempotency_key": "b", "status": "delivered"}, (1.0,), 0) is None
    )


def test_retries_follow_the_schedule_then_dead_letter():
    queue = _queued("a", "b")["queue"]
    schedule = (1.0, 5.0)
    first = pending.decide(queue, {"idempotency_key": "a", "status": "retry", "reason": "http.500"}, schedule, 200.0)
    assert (first.action, first.queue[0]["due"], first.queue[0]["attempts"]) == (pending.RETRY, 201.0, 1)
    second = pending.decide(first.queue, {"idempotency_key": "a", "status": "retry"}, schedule, 300.0)
    assert second.queue[0]["due"] == 305.0 and [e["key"] for e in second.queue] == ["a", "b"]  # b waits behind a
    third = pending.decide(second.queue, {"idempotency_key": "a", "status": "retry"}, schedule, 400.0)
    assert (third.action, third.reason, third.entry["attempts"]) == (pending.DEAD, "delivery.retries_exhausted", 3)
    assert [e["key"] for e in third.queue] == ["b"]


def test_retry_after_replaces_the_scheduled_wait_up_to_its_longest_step():
    decision = pending.decide(
        _queued("a")["queue"], {"idempotency_key": "a", "status": "retry", "retry_after": 42}, (1.0, 60.0), 0.0
    )
    assert decision.queue[0]["due"] == 42.0
    a_day = pending.decide(
        _queued("a")["queue"], {"idempotency_key": "a", "status": "retry", "retry_after": 86400}, (1.0, 60.0), 0.0
    )
    assert a_day.queue[0]["due"] == 60.0  # finding 9: a subscriber's Retry-After no longer parks its events for a day


def test_rejected_is_dead_and_gone_holds_the_head():
    queue = _queued("a", "b")["queue"]
    rejected = pending.decide(
        queue, {"idempotency_key": "a", "status": "rejected", "reason": "delivery.rejected"}, (), 0
    )
    assert (rejected.action, [e["key"] for e in rejected.queue]) == (pending.DEAD, ["b"])
    gone = pending.decide(queue, {"idempotency_key": "a", "status": "rejected", "reason": "delivery.gone"}, (), 0)
    assert (gone.action, [e["key"] for e in gone.queue]) == (pending.HOLD, ["a", "b"])


def test_target_defaults_and_errors_name_fields():
    target = parse_target(
        "s",
        {
            "delivery": {
                "kind": "webhook",
                "url": "https://x.example/hook",
                "secret_ref": "env:SAMBAND_WEBHOOK_SECRET_S",
            }
        },
    )
    assert target.retry_schedule == DEFAULT_RETRY_SCHEDULE and not target.paused and target.config.mode == "structured"
    with pytest.raises(TargetError, match="url"):
        parse_target("s", {"delivery": {"kind": "webhook", "url": "x", "secret_ref": "env:SAMBAND_WEBHOOK_SECRET_S"}})
    with pytest.raises(TargetError, match="retry_schedule"):
        parse_target(
            "s",
            {
                "delivery": {
                    "kind": "webhook",
                    "url": "https://x",
                    "secret_ref": "env:SAMBAND_WEBHOOK_SECRET_S",
                    "retry_schedule": [-1],
                }
            },
        )


def test_kafka_target_gets_its_own_topic_and_the_subscription_fields():
    target = parse_target("s", {"fields": {"Move": ["movedDate"]}, "delivery": {"kind": "kafka"}})
    assert (target.kind, target.subscriber.fields) == ("kafka", {"Move": ("movedDate",)})
    assert subscriber_topic("subscriber.", "s") == "subscriber.s"
    assert target.fingerprint != parse_target("t", {"fields": {}, "delivery": {"kind": "kafka"}}).fingerprint
    with pytest.raises(TargetError, match="topic cannot be chosen"):
        parse_target("s", {"fields": {}, "delivery": {"kind": "kafka", "topic": "s-events"}})


def test_a_kind_that_is_not_installed_is_refused_by_name():
    with pytest.raises(TargetError, match="delivery kind 'carrier-pigeon' is not installed"):
        parse_target("s", {"fields": {}, "delivery": {"kind": "carrier-pigeon"}})
