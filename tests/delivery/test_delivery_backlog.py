"""A subscription's share of memory (queues.py, SAMBAND_DELIVERY_MEMORY_PER_SUBSCRIPTION), without a broker.

A subscription holding its limit leaves its further records in the deliveries topic: they are
settled (the commit passes them) once a Behind record saying where it resumes is written, and it
takes them again, in order, when it has room. The broker-facing run is tests/faults/test_paused_backlog.py.
"""

from __future__ import annotations

import json

import structlog
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


def _queues(stored: dict[str, bytes] | None = None, active: bool = True) -> tuple[DeliveryQueues, Lanes]:
    lanes = Lanes(active)
    queues = DeliveryQueues(
        TOPICS, lanes, DeadLetterSeal(bytes(32)), Grades(), clock=lambda: 1000.0, memory_limit=LIMIT
    )
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
    assert queues.in_memory["sub"] == LIMIT
    assert sum(len(q) for q in queues.queues.values()) == LIMIT  # e0, f0, e1, f1 in memory
    assert writes == [(BEHIND, True)]
    assert pending.behind_state(queues.stored.get(0, BEHIND)) == pending.Behind(cursor=4, last=9, left=6)
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
    assert queues.in_memory["sub"] == LIMIT  # took e2, f2, e3, f3; e4 (offset 8) had no room
    writes, _ = _cycle(queues, [])
    assert writes == [(f"sub/{ALICE}", True), (f"sub/{BOB}", True), (BEHIND, True)]  # queues first
    assert pending.behind_state(queues.stored.get(0, BEHIND)) == pending.Behind(cursor=8, last=9, left=2)
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
    assert restarted.behind[("sub", 0)] == pending.Behind(cursor=6, last=9, left=4)
    _cycle(restarted, RECORDS[6:])  # read again from an older commit: left in the topic, counted once
    assert restarted.behind[("sub", 0)] == pending.Behind(cursor=6, last=9, left=4)
    assert _keys(restarted) == {f"sub/{ALICE}": ["e1.sub", "e2.sub"], f"sub/{BOB}": ["f1.sub", "f2.sub"]}
    _deliver_heads(restarted)
    restarted.take_backlog(0, 4, RECORDS[4:])  # read from before the cursor: offsets 4, 5 are not taken again
    assert _keys(restarted) == {f"sub/{ALICE}": ["e2.sub", "e3.sub"], f"sub/{BOB}": ["f2.sub", "f3.sub"]}
    assert restarted.behind[("sub", 0)] == pending.Behind(cursor=8, last=9, left=2)


def _keys(queues: DeliveryQueues) -> dict[str, list[str]]:
    return {key: [e["key"] for e in queue] for key, queue in queues.queues.items()}


def test_a_subscription_behind_on_two_partitions_has_a_cursor_stored_in_each():
    queues, _ = _queues()
    _cycle(queues, [*RECORDS, _record(0, "c" * 32, "g0", partition=1), _record(1, "c" * 32, "g1", partition=1)])
    assert pending.behind_state(queues.stored.get(0, BEHIND)) == pending.Behind(cursor=4, last=9, left=6)
    assert pending.behind_state(queues.stored.get(1, BEHIND)) == pending.Behind(cursor=0, last=1, left=2)


def test_a_read_that_began_after_a_subscriptions_cursor_does_not_move_it():
    # Found in the broker run: a read begun for another subscription (further on) moved this one's
    # cursor past records it had never looked at, and they were never delivered.
    queues, _ = _queues()
    _cycle(queues, RECORDS)
    _deliver_heads(queues)
    _deliver_heads(queues)
    queues.take_backlog(0, 8, RECORDS[8:])  # a read from offset 8: "sub" resumes at 4
    assert queues.behind[("sub", 0)] == pending.Behind(cursor=4, last=9, left=6)
    assert queues.in_memory["sub"] == 0


def _drain(queues: DeliveryQueues, lanes: Lanes, records: list[ConsumerRecord]) -> list[str]:
    """Deliver every head and take the backlog until nothing is left; the heads in the order sent."""
    sent: list[str] = []
    for _ in range(50):
        for key in list(queues.queues):
            sent.append(queues.queues[key][0]["key"])
            queues.apply(key, queues.queues[key][0], Outcome.delivered())
        if (wanted := queues.backlog_wanted()) and 0 in wanted:
            queues.take_backlog(0, wanted[0], [r for r in records if r.offset >= wanted[0]])
        _cycle(queues, [])
        if not queues.queues and not queues.behind:
            return sent
    raise AssertionError(f"not drained: {queues.queues} {queues.behind}")


def test_records_read_again_below_the_cursor_after_a_restart_are_delivered_before_the_ones_left():
    # Found by review: e0, f0, e1, f1 were open in memory when the subscription fell behind; after a
    # restart they were read again from the commit and taken for records left in the topic: lost.
    first, _ = _queues()
    _, commit = _cycle(first, RECORDS)
    assert commit == {0: 0}
    restarted, lanes = _queues(first.stored.partitions[0])
    assert restarted.backlog_wanted() == {}  # the group consumer has not read up to the cursor yet
    _cycle(restarted, RECORDS)  # read again from the commit
    assert _keys(restarted) == {f"sub/{ALICE}": ["e0.sub", "e1.sub"], f"sub/{BOB}": ["f0.sub", "f1.sub"]}
    sent = _drain(restarted, lanes, RECORDS)
    assert [k for k in sent if k.startswith("e")] == ["e0.sub", "e1.sub", "e2.sub", "e3.sub", "e4.sub"]
    assert [k for k in sent if k.startswith("f")] == ["f0.sub", "f1.sub", "f2.sub", "f3.sub", "f4.sub"]


def test_a_purge_for_a_subscription_behind_goes_first_and_is_sent_once():
    queues, lanes = _queues(active=False)  # paused: every head waits
    value = {**delivery("sub", ALICE, "p0"), "kind": "purge"}
    raw = json.dumps(value).encode()
    purge = ConsumerRecord(TOPICS.deliveries, 0, 10, 0, 0, delivery_key(value), raw, None, 0, len(raw), [])
    _cycle(queues, [*RECORDS, purge])
    assert _keys(queues)[f"sub/{ALICE}"][0] == "p0.sub"  # before Alice's e0, e1 held in memory
    assert queues.behind[("sub", 0)].left == 6  # the purge is not left in the topic
    lanes.active = True
    sent = _drain(queues, lanes, [*RECORDS, purge])
    assert sent.count("p0.sub") == 1
    assert [k for k in sent if k.startswith(("e", "p"))] == ["p0.sub", "e0.sub", "e1.sub", "e2.sub", "e3.sub", "e4.sub"]


def test_records_the_retention_deleted_are_reported_and_the_subscription_resumes_after_them():
    queues, _ = _queues()
    _cycle(queues, RECORDS)
    _deliver_heads(queues)
    _deliver_heads(queues)
    # (The log line itself, however an earlier test left structlog configured.)
    with structlog.testing.capture_logs() as logged:
        queues.take_backlog(0, 4, RECORDS[8:])  # offsets 4 to 7 are gone from the topic
    expired = [e for e in logged if e["event"] == "delivery.backlog_expired"]
    assert [(e["from_offset"], e["to_offset"]) for e in expired] == [(4, 7)]
    assert _keys(queues) == {f"sub/{ALICE}": ["e4.sub"], f"sub/{BOB}": ["f4.sub"]}
    assert ("sub", 0) not in queues.behind


class Waiting(Lanes):
    """Lanes where the subscriptions in `waiting` take no deliveries (paused, suspended)."""

    def __init__(self, waiting: set[str]):
        super().__init__()
        self.waiting = waiting

    def is_active(self, sub: str) -> bool:
        return sub not in self.waiting

    def holds(self, key: str) -> bool:
        return key.split("/")[0] in self.waiting


def _worker_queues(worker_limit: int, waiting: set[str]) -> tuple[DeliveryQueues, Waiting]:
    lanes = Waiting(waiting)
    queues = DeliveryQueues(
        TOPICS,
        lanes,
        DeadLetterSeal(bytes(32)),
        Grades(),
        clock=lambda: 1000.0,
        memory_limit=100,
        worker_memory_limit=worker_limit,
    )
    queues.stored.partitions[0] = {}
    queues.assigned({0})
    return queues, lanes


def _deliver(queues: DeliveryQueues, sub: str) -> None:
    for key in [k for k in queues.queues if k.startswith(f"{sub}/")]:
        while key in queues.queues:
            queues.apply(key, queues.queues[key][0], Outcome.delivered())


def _burst(sub: str, first: int, count: int) -> list[ConsumerRecord]:
    return [_record(first + i, f"{first + i:032x}", f"{sub}{first + i}", sub=sub) for i in range(count)]


SLOW = ("slow-a", "slow-b", "slow-c", "slow-d")


def _slow_ones_down(lanes_waiting: set[str] | None = None) -> tuple[DeliveryQueues, Waiting, list[ConsumerRecord]]:
    """Four subscriptions that take no deliveries, ten records each (offsets 0-39), worker limit 12."""
    queues, lanes = _worker_queues(worker_limit=12, waiting=set(SLOW))
    records = [record for n, sub in enumerate(SLOW) for record in _burst(sub, 10 * n, 10)]
    for n in range(len(SLOW)):
        _cycle(queues, records[10 * n : 10 * n + 10])
    return queues, lanes, records


def test_subscribers_down_one_after_another_take_nothing_more_once_the_worker_holds_its_limit():
    """SAMBAND_DELIVERY_MEMORY_PER_WORKER (12 here): four subscriptions that take no deliveries, each
    far below its own limit (100), go down in turn; once the process holds 12 each takes one record
    at most (a head to probe with) and leaves the rest in the topic; a burst of a subscription
    taking deliveries, larger than the limit, all goes out."""
    queues, lanes, _ = _slow_ones_down()
    assert [queues.in_memory[sub] for sub in SLOW] == [10, 2, 1, 1]
    assert {sub: b.left for (sub, _), b in queues.behind.items()} == {"slow-b": 8, "slow-c": 9, "slow-d": 9}

    _cycle(queues, _burst("fine", 40, 50))
    assert [k for k in lanes.offered if k.endswith(".fine")] == [f"fine{i}.fine" for i in range(40, 90)]
    assert ("fine", 0) not in queues.behind
    _deliver(queues, "fine")
    assert queues.in_memory.total == 14
    assert queues.backlog_wanted() == {}  # the waiting ones have no room while the process holds 14


def test_with_the_process_down_to_half_its_limit_the_waiting_ones_take_their_records_again_in_offset_order():
    queues, lanes, records = _slow_ones_down()
    queues.backlog_ready.clear()
    lanes.waiting.discard("slow-a")  # slow-a resumes and catches up
    heads = [k for k in queues.queues if k.startswith("slow-a/")]
    for key in heads[:6]:
        queues.apply(key, queues.queues[key][0], Outcome.delivered())
    assert queues.in_memory.total == 8  # above half the limit (6): still no room for the waiting ones
    assert not queues.backlog_ready.is_set() and queues.backlog_wanted() == {}
    _deliver(queues, "slow-a")
    assert queues.in_memory.total == 4 and queues.backlog_ready.is_set()
    assert queues.backlog_wanted() == {0: 12}  # slow-b's first record left
    queues.take_backlog(0, 12, records[12:])
    assert [queues.in_memory[sub] for sub in SLOW] == [0, 10, 1, 1]  # slow-b took 8: the process holds 12
    assert [k for k in lanes.offered if k.endswith(".slow-b")] == [f"slow-b{i}.slow-b" for i in range(10, 20)]
    _cycle(queues, [])
    assert pending.behind_state(queues.stored.get(0, pending.behind_key("slow-c"))).cursor == 21


def test_a_subscription_resumed_takes_its_records_again_though_the_waiting_ones_hold_the_limit():
    queues, lanes, records = _slow_ones_down()
    lanes.waiting.discard("slow-d")  # resumed: it takes deliveries again, the others still hold 13
    assert queues.backlog_wanted() == {0: 31}
    queues.take_backlog(0, 31, records[31:])
    assert queues.in_memory["slow-d"] == 10 and ("slow-d", 0) not in queues.behind
    assert [k for k in lanes.offered if k.endswith(".slow-d")] == [f"slow-d{i}.slow-d" for i in range(30, 40)]


def test_a_suspended_subscription_that_holds_nothing_takes_one_record_so_it_can_probe_its_endpoint():
    """Its breaker open, a subscription is waiting; with its last head dead-lettered it holds nothing,
    and a probe needs a head: it has room for one record, whatever the process holds."""
    queues, lanes, records = _slow_ones_down()
    for key in [k for k in queues.queues if k.startswith("slow-c/")]:
        while key in queues.queues:  # its heads given up (dead-lettered after the retry schedule)
            queues.apply(key, queues.queues[key][0], Outcome.rejected("http.4xx"))
    assert queues.in_memory["slow-c"] == 0 and queues.in_memory.total == 13
    assert queues.backlog_wanted() == {0: 21}
    queues.take_backlog(0, 21, records[21:])
    assert queues.in_memory["slow-c"] == 1 and lanes.offered[-1] == "slow-c21.slow-c"


def test_a_subscription_whose_breaker_is_open_is_waiting():
    from agents.delivery.breaker import Breaker
    from agents.delivery.dispatcher import Dispatcher
    from agents.delivery.egress import Egress
    from agents.delivery.target import Target
    from connectors.api import Subscriber
    from connectors.webhook.config import WebhookConfig

    async def save(sub: str, status: dict) -> None:
        pass

    dispatcher = Dispatcher(lambda *a: None, save, Egress(Grades(), b"k" * 32), {}, Breaker(20, 30.0))
    target = Target(Subscriber("x"), "webhook", WebhookConfig(url="http://127.0.0.1:1/h", secret_ref="env:X"), (1.0,))
    dispatcher.targets["x"] = target
    dispatcher.status["x"] = {"fingerprint": target.fingerprint, "verified": True}
    assert not dispatcher.is_waiting("x")
    dispatcher.breaker.open("x", 1000.0)
    assert dispatcher.is_waiting("x")
    assert dispatcher.is_waiting("unknown")  # no subscription: nothing is delivered for it
