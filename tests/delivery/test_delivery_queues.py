"""The delivery stage's batch logic without a broker: what is stored, what is written, what may be committed.

The broker-facing behaviour (crash, order, isolation) is in the worker tests; these pin the
rules that make the fast path cheap and safe: a head delivered at once writes no pending
state, a failed head stores its queue, and the commit never passes a delivery still open.
"""

from __future__ import annotations

import json

from aiokafka import ConsumerRecord
from delivery_fixtures import delivery, delivery_key

from agents.delivery.egress import Grades
from agents.delivery.offsets import OpenOffsets
from agents.delivery.queues import DeliveryQueues
from agents.delivery.target import Target
from bus.topics import topic_names
from connectors.api import Outcome, Subscriber
from connectors.dead_letters import DeadLetterSeal
from connectors.webhook.config import WebhookConfig

TOPICS = topic_names("unit")
PERSON = "a" * 32


class Lanes:
    """Stands in for the dispatcher: records which heads were offered."""

    def __init__(self, active: bool = True):
        self.active = active
        self.offered: list[str] = []
        self.targets = {
            "sub": Target(
                Subscriber("sub"),
                "webhook",
                WebhookConfig(url="http://127.0.0.1:1/hook", secret_ref="env:X"),
                (1.0, 2.0),
            )
        }

    def is_active(self, sub: str) -> bool:
        return self.active

    def offer(self, key: str, entry: dict) -> None:
        self.offered.append(entry["key"])

    def holds(self, key: str) -> bool:
        return not self.active

    def is_waiting(self, sub: str) -> bool:
        return not self.is_active(sub)

    def done(self, key: str) -> None:
        pass

    def drop_partitions(self, partitions: set[int]) -> None:
        pass


def _record(offset: int, event_id: str, partition: int = 0) -> ConsumerRecord:
    value = delivery("sub", PERSON, event_id)
    raw = json.dumps(value).encode()
    return ConsumerRecord(TOPICS.deliveries, partition, offset, 0, 0, delivery_key(value), raw, None, 0, len(raw), [])


def _queues(active: bool = True, partition: int = 0) -> tuple[DeliveryQueues, Lanes]:
    lanes = Lanes(active)
    queues = DeliveryQueues(TOPICS, lanes, DeadLetterSeal(bytes(32)), Grades(), clock=lambda: 1000.0)
    queues.stored.partitions[partition] = {}
    queues.assigned({partition})
    return queues, lanes


def _cycle(queues: DeliveryQueues, records: list[ConsumerRecord]) -> tuple[list, dict[int, int]]:
    """One batch-service cycle: outputs, then the pending writes, then what may be committed."""
    outputs: list = []
    queues.handle_batch(records, outputs)
    writes = list(queues.stored._pending)
    queues.stored._pending.clear()
    return [o[0] for o in outputs] + [("pending", w[1], w[2] is not None) for w in writes], queues.committable()


KEY = f"sub/{PERSON}"


def test_a_head_delivered_at_once_writes_its_ledger_entry_only_and_commits_after_it():
    queues, lanes = _queues()
    written, commit = _cycle(queues, [_record(0, "e0"), _record(1, "e1")])
    assert (written, lanes.offered) == ([], ["e0.sub"])  # only the head goes out
    assert commit.get(0, 0) == 0  # both stay open
    queues.apply(KEY, queues.queues[KEY][0], Outcome.delivered())
    written, commit = _cycle(queues, [])
    assert written == [TOPICS.ledger]  # no pending state, no attempt record: the attempt log holds failures
    assert commit == {0: 1}  # below e1, still open
    assert lanes.offered == ["e0.sub", "e1.sub"]


def test_a_failed_head_logs_the_attempt_stores_its_queue_and_no_longer_holds_the_commit_back():
    queues, _lanes = _queues()
    _cycle(queues, [_record(0, "e0"), _record(1, "e1")])
    queues.apply(KEY, queues.queues[KEY][0], Outcome.retry("http.5xx"))
    written, commit = _cycle(queues, [])
    assert written == [TOPICS.outcomes, ("pending", KEY, True)]
    assert commit == {0: 2}
    stored = json.loads(queues.stored.get(0, KEY))
    assert ([e["key"] for e in stored["queue"]], stored["queue"][0]["due"], stored["seen"]) == (
        ["e0.sub", "e1.sub"],
        1001.0,
        1,
    )
    # The retry succeeds: the stored queue shrinks, and goes once empty.
    queues.apply(KEY, queues.queues[KEY][0], Outcome.delivered())
    queues.apply(KEY, queues.queues[KEY][0], Outcome.delivered())
    written, _ = _cycle(queues, [])
    assert written == [TOPICS.ledger] * 2 + [("pending", KEY, False)]


def test_a_queue_open_longer_than_store_after_is_stored_and_no_longer_holds_the_commit_back():
    now = [1000.0]
    lanes = Lanes()
    queues = DeliveryQueues(TOPICS, lanes, DeadLetterSeal(bytes(32)), Grades(), clock=lambda: now[0], store_after=2.0)
    queues.stored.partitions[0] = {}
    queues.assigned({0})
    _cycle(queues, [_record(0, "e0"), _record(1, "e1")])
    now[0] += 1.9
    queues.store_overdue()
    assert _cycle(queues, []) == ([], {})  # within store_after: in memory, open (the commit stays at 0)
    now[0] += 0.2
    queues.store_overdue()
    written, commit = _cycle(queues, [_record(2, "e2")])
    assert (written, commit) == ([("pending", KEY, True)], {0: 3})  # stored, records settled, e2 joined it
    assert json.loads(queues.stored.get(0, KEY))["seen"] == 2
    # The head on its way when the queue was stored comes back: the stored queue moves on.
    queues.apply(KEY, queues.queues[KEY][0], Outcome.delivered())
    written, commit = _cycle(queues, [])
    assert written == [TOPICS.ledger, ("pending", KEY, True)]
    assert [e["key"] for e in json.loads(queues.stored.get(0, KEY))["queue"]] == ["e1.sub", "e2.sub"]
    assert lanes.offered == ["e0.sub", "e1.sub"]


def test_a_record_for_a_stored_queue_emptied_in_this_cycle_is_settled_and_does_not_stop_the_commit():
    queues, _ = _queues()
    _cycle(queues, [_record(0, "e0")])
    queues.apply(KEY, queues.queues[KEY][0], Outcome.retry("http.5xx"))  # stored
    _cycle(queues, [])
    queues.apply(KEY, queues.queues[KEY][0], Outcome.delivered())  # emptied; its deletion is written next cycle
    _, commit = _cycle(queues, [_record(1, "e1")])  # the same person's next record arrives first
    queues.apply(KEY, queues.queues[KEY][0], Outcome.delivered())
    _, later = _cycle(queues, [])
    assert {**commit, **later} == {0: 2}  # e1 settled: the commit passes it


def test_the_ledger_entry_and_attempt_record_go_to_the_partition_the_delivery_was_read_from():
    queues, _ = _queues(partition=3)
    queues.accept([_record(0, "e0", partition=3)])
    queues.apply(KEY, queues.queues[KEY][0], Outcome.retry("http.5xx"))
    queues.apply(KEY, queues.queues[KEY][0], Outcome.delivered())
    outputs: list = []
    queues.handle_batch([], outputs)
    assert [(o[0], o[4]) for o in outputs] == [(TOPICS.outcomes, 3), (TOPICS.ledger, 3)]


def test_records_of_an_inactive_subscription_are_stored_and_a_record_read_again_is_not_queued_twice():
    queues, _ = _queues(active=False)
    written, commit = _cycle(queues, [_record(0, "e0"), _record(1, "e1")])
    assert (written, commit) == ([("pending", KEY, True)], {0: 2})
    _cycle(queues, [_record(1, "e1")])  # read again after a restart
    assert [e["key"] for e in queues.queues[KEY]] == ["e0.sub", "e1.sub"]


def test_the_commit_point_is_the_oldest_open_offset():
    offsets = OpenOffsets()
    for offset in range(5):
        offsets.read(0, offset)
    offsets.settle(0, 0)
    offsets.settle(0, 2)
    assert offsets.committable() == {0: 1}
    offsets.settle(0, 1)
    assert offsets.committable() == {0: 3}
    assert offsets.committable() == {}  # unchanged: nothing to commit
    offsets.settle(0, 3)
    offsets.settle(0, 4)
    assert offsets.committable() == {0: 5}


def test_a_stored_queue_holds_no_readable_record_and_a_restart_reads_it_back():
    queues, _ = _queues(active=False)
    _cycle(queues, [_record(0, "e0"), _record(1, "e1")])
    stored = queues.stored.get(0, KEY)
    assert PERSON.encode() not in stored and b'"event"' not in stored  # the delivery records are sealed
    after_restart, lanes = _queues(active=False)
    after_restart.stored.partitions[0] = {KEY: stored}
    after_restart.assigned({0})
    assert [json.loads(e["record"])["event"]["id"] for e in after_restart.queues[KEY]] == ["e0", "e1"]
    assert lanes.offered == ["e0.sub"]
