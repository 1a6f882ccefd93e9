"""A subscription's share of memory (queues.py, SAMBAND_DELIVERY_HELD_PER_SUBSCRIPTION), without a broker.

A subscription holding its limit leaves its further records in the deliveries topic: they are
settled (the commit passes them) once a Behind record saying where it resumes is written, and it
takes them again, in order, when it has room. The broker-facing run is tests/faults/test_paused_backlog.py.
"""

from __future__ import annotations

import json

from aiokafka import ConsumerRecord
from delivery_fixtures import delivery, delivery_key
from test_delivery_queues import TOPICS, Lanes

from agents.delivery import pending
from agents.delivery.egress import Grades
from agents.delivery.queues import DeliveryQueues
from connectors.api import Outcome
from connectors.dead_letters import DeadLetterSeal

LIMIT = 4
ALICE, BOB = "a" * 32, "b" * 32


def _record(offset: int, person: str, event_id: str, sub: str = "sub", partition: int = 0) -> ConsumerRecord:
    value = delivery(sub, person, event_id)
    raw = json.dumps(value).encode()
    return ConsumerRecord(TOPICS.deliveries, partition, offset, 0, 0, delivery_key(value), raw, None, 0, len(raw), [])


def _queues(stored: dict[str, bytes] | None = None) -> tuple[DeliveryQueues, Lanes]:
    lanes = Lanes()
    queues = DeliveryQueues(TOPICS, lanes, DeadLetterSeal(bytes(32)), Grades(), clock=lambda: 1000.0, held_limit=LIMIT)
    queues.stored.partitions[0] = dict(stored or {})
    queues.stored.partitions[1] = {}
    queues.assigned({0, 1})
    return queues, lanes


def _cycle(queues: DeliveryQueues, records: list[ConsumerRecord]) -> tuple[list[tuple[str, bool]], dict[int, int]]:
    """One cycle: the pending writes in order (key, set or deleted), then what may be committed."""
    queues.handle_batch(records, [])
    writes = [(key, value is not None) for p, key, value in queues.stored._pending if p == 0]
    for partition, key, value in queues.stored._pending:  # as the topic would hold them
        if value is None:
            queues.stored.partitions[partition].pop(key, None)
        else:
            queues.stored.partitions[partition][key] = value
    queues.stored._pending.clear()
    return writes, queues.committable()


def _deliver_heads(queues: DeliveryQueues) -> None:
    for key in list(queues.queues):
        queues.apply(key, queues.queues[key][0], Outcome.delivered())


BEHIND = pending.behind_key("sub")
# Ten events: Alice's e0..e4 and Bob's f0..f4, alternating; offsets 0..9.
RECORDS = [_record(2 * i, ALICE, f"e{i}") for i in range(5)] + [_record(2 * i + 1, BOB, f"f{i}") for i in range(5)]
RECORDS.sort(key=lambda r: r.offset)


def test_a_subscription_at_its_limit_leaves_its_records_in_the_topic_and_they_no_longer_hold_the_commit():
    queues, lanes = _queues()
    writes, commit = _cycle(queues, RECORDS)
    assert queues.held["sub"] == LIMIT
    assert sum(len(q) for q in queues.queues.values()) == LIMIT  # e0, f0, e1, f1 in memory
    assert writes == [(BEHIND, True)]
    assert pending.behind_state(queues.stored.get(0, BEHIND)) == pending.Behind(cursor=4, last=9, waiting=6)
    assert commit == {0: 0}  # the four in memory are open; the six left are settled behind them
    _deliver_heads(queues)
    _deliver_heads(queues)
    _, commit = _cycle(queues, [])
    assert commit == {0: 10}  # nothing open: the commit passes the records left in the topic
    assert lanes.offered == ["e0.sub", "f0.sub", "e1.sub", "f1.sub"]


def test_with_room_again_it_takes_its_records_in_order_and_is_no_longer_behind_once_it_has_them_all():
    queues, lanes = _queues()
    _cycle(queues, RECORDS)
    assert queues.backlog_wanted() == {}  # no room
    _deliver_heads(queues)
    _deliver_heads(queues)
    assert queues.backlog_wanted() == {0: 4}
    queues.take_backlog(0, 4, RECORDS[4:])
    assert queues.held["sub"] == LIMIT  # took e2, f2, e3, f3; e4 (offset 8) had no room
    writes, _ = _cycle(queues, [])
    assert writes == [(f"sub/{ALICE}", True), (f"sub/{BOB}", True), (BEHIND, True)]  # queues first
    assert pending.behind_state(queues.stored.get(0, BEHIND)) == pending.Behind(cursor=8, last=9, waiting=2)
    _deliver_heads(queues)
    _deliver_heads(queues)
    queues.take_backlog(0, 8, RECORDS[8:])
    writes, _ = _cycle(queues, [])
    assert (BEHIND, False) in writes and (0, "sub") not in [(p, s) for s, p in queues.behind]
    _deliver_heads(queues)
    assert [k.split(".")[0] for k in lanes.offered if k.startswith("e")] == ["e0", "e1", "e2", "e3", "e4"]
    assert [k.split(".")[0] for k in lanes.offered if k.startswith("f")] == ["f0", "f1", "f2", "f3", "f4"]
    # Caught up: the next record comes straight in.
    _cycle(queues, [_record(10, ALICE, "e5")])
    assert queues.queues[f"sub/{ALICE}"][-1]["key"] == "e5.sub"


def test_another_subscription_is_not_held_back_by_one_behind():
    queues, lanes = _queues()
    _cycle(queues, RECORDS)
    _cycle(queues, [_record(10, ALICE, "x0", sub="other")])
    assert lanes.offered[-1] == "x0.other"
    assert ("other", 0) not in queues.behind


def test_after_a_restart_it_resumes_from_its_stored_cursor_and_a_record_read_again_is_not_counted_twice():
    first, _ = _queues()
    _cycle(first, RECORDS)
    _deliver_heads(first)
    first.take_backlog(0, 4, RECORDS[4:6])  # took e2, f2 (offsets 4, 5), then the worker dies
    _cycle(first, [])
    restarted, _ = _queues(first.stored.partitions[0])
    assert restarted.behind[("sub", 0)] == pending.Behind(cursor=6, last=9, waiting=4)
    _cycle(restarted, RECORDS[6:])  # read again from an older commit: left in the topic, counted once
    assert restarted.behind[("sub", 0)] == pending.Behind(cursor=6, last=9, waiting=4)
    assert _keys(restarted) == {f"sub/{ALICE}": ["e1.sub", "e2.sub"], f"sub/{BOB}": ["f1.sub", "f2.sub"]}
    _deliver_heads(restarted)
    restarted.take_backlog(0, 4, RECORDS[4:])  # read from before the cursor: offsets 4, 5 are not taken again
    assert _keys(restarted) == {f"sub/{ALICE}": ["e2.sub", "e3.sub"], f"sub/{BOB}": ["f2.sub", "f3.sub"]}
    assert restarted.behind[("sub", 0)] == pending.Behind(cursor=8, last=9, waiting=2)


def _keys(queues: DeliveryQueues) -> dict[str, list[str]]:
    return {key: [e["key"] for e in queue] for key, queue in queues.queues.items()}


def test_a_subscription_behind_on_two_partitions_has_a_cursor_stored_in_each():
    queues, _ = _queues()
    _cycle(queues, [*RECORDS, _record(0, "c" * 32, "g0", partition=1), _record(1, "c" * 32, "g1", partition=1)])
    assert pending.behind_state(queues.stored.get(0, BEHIND)) == pending.Behind(cursor=4, last=9, waiting=6)
    assert pending.behind_state(queues.stored.get(1, BEHIND)) == pending.Behind(cursor=0, last=1, waiting=2)


def test_a_read_that_began_after_a_subscriptions_cursor_does_not_move_it():
    # Found in the broker run: a read begun for another subscription (further on) moved this one's
    # cursor past records it had never looked at, and they were never delivered.
    queues, _ = _queues()
    _cycle(queues, RECORDS)
    _deliver_heads(queues)
    _deliver_heads(queues)
    queues.take_backlog(0, 8, RECORDS[8:])  # a read from offset 8: "sub" resumes at 4
    assert queues.behind[("sub", 0)] == pending.Behind(cursor=4, last=9, waiting=6)
    assert queues.held["sub"] == 0
