"""The delivery stage never waits on, nor falls with, a delivery kind's own code: a sink that hangs
as it starts, or fails as it stops, holds back no subscription status or protection grade."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from types import SimpleNamespace

import orjson
import pytest
import structlog.testing
from delivery_fixtures import delivery, delivery_key

from agents.delivery import pending
from agents.delivery import target as target_module
from agents.delivery.dispatcher import Dispatcher, Heads, is_history
from agents.delivery.egress import Egress, Grades
from agents.delivery.target import parse_target
from agents.routing.router import delivery_writer
from connectors.api import ConnectorConfig, Outcome, Sink

SUB = "hanging-kind"


class HangingSink(Sink):
    Config = ConnectorConfig

    async def start(self) -> None:
        await asyncio.Event().wait()  # a subscriber's server that never answers

    async def write(self, batch):
        raise AssertionError("never started, never written")


class FailingStopSink(Sink):
    Config = ConnectorConfig
    stopped: list[str] = []

    async def write(self, batch):
        return []

    async def stop(self) -> None:
        FailingStopSink.stopped.append(self.context.instance)
        raise OSError("disk full")


@pytest.fixture
def kinds(monkeypatch):
    installed = {"hanging": HangingSink, "failing-stop": FailingStopSink}
    monkeypatch.setattr(target_module, "delivery_kinds", lambda: installed)


def dispatcher(saved: list) -> Dispatcher:
    async def save_status(sub, status):
        saved.append((sub, status))

    return Dispatcher(lambda *_: None, save_status, Egress(Grades(), b"k" * 32), {})


def verified(target) -> dict:
    return {"fingerprint": target.fingerprint, "verified": True, "disabled_reason": None, "at": 1.0}


async def until(condition, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)  # poll interval inside the deadline


async def test_a_sink_that_hangs_as_it_starts_holds_back_no_status(kinds):
    saved: list = []
    d = dispatcher(saved)
    hanging = parse_target(SUB, {"delivery": {"kind": "hanging"}})
    async with asyncio.timeout(5):  # before: set_status waited for the sink's start, for ever
        await d.set_target(SUB, hanging)
        await d.set_status(SUB, verified(hanging))
        await d.set_status("another", {"verified": False, "at": 2.0})
    assert d.is_active(SUB) and SUB not in d._lanes  # its heads wait; nothing else does
    await d.close()


async def test_a_sink_whose_stop_fails_does_not_fail_the_stage(kinds):
    saved: list = []
    d = dispatcher(saved)
    first = parse_target(SUB, {"delivery": {"kind": "failing-stop"}})
    await d.set_target(SUB, first)
    await d.set_status(SUB, verified(first))
    await until(lambda: SUB in d._lanes, 5)  # the lane opens aside
    await d.set_target(SUB, None)  # deleted: the lane closes, its sink's stop raises
    await until(lambda: SUB in FailingStopSink.stopped, 5)
    assert SUB not in d._lanes
    await d.close()


class CountingVerifySink(Sink):
    """A kind whose handshake takes a moment and counts how many are under way at once."""

    Config = ConnectorConfig
    running = 0
    most = 0
    verified: set[str] = set()

    async def verify(self, subscription: str):
        cls = CountingVerifySink
        cls.running += 1
        cls.most = max(cls.most, cls.running)
        try:
            await asyncio.sleep(0.05)  # the subscriber's answer takes a while (the handshake's own time, not a wait)
        finally:
            cls.running -= 1
        cls.verified.add(subscription)
        return await super().verify(subscription)

    async def write(self, batch):
        return []


async def test_a_worker_with_many_new_subscriptions_sends_a_bounded_number_of_handshakes_at_once(monkeypatch):
    """Found by bench/bench_national.py: 18,000 new webhook subscriptions made one worker process
    send 18,000 handshakes at once; most timed out on its own busy event loop, and were retried."""
    monkeypatch.setattr(target_module, "delivery_kinds", lambda: {"counting": CountingVerifySink})
    CountingVerifySink.verified, CountingVerifySink.most = set(), 0
    d = dispatcher([])
    subs = [f"sub-{n}" for n in range(128)]
    for sub in subs:
        await d.set_target(sub, parse_target(sub, {"delivery": {"kind": "counting"}}))
    await until(lambda: CountingVerifySink.verified >= set(subs), 20)
    assert 1 < CountingVerifySink.most <= 32  # the dispatcher's HANDSHAKES_AT_ONCE
    # and no finished handshake's task is kept (700 bytes each: 18,000 stayed in a national worker)
    await until(lambda: not d._verifying, 5)
    await d.close()


class HangingVerifySink(Sink):
    """A tenant's endpoint that never answers its handshake."""

    Config = ConnectorConfig

    async def verify(self, subscription: str):
        await asyncio.Event().wait()

    async def write(self, batch):
        return []


async def test_endpoints_that_hang_in_their_handshake_hold_back_no_other_subscription_for_long(monkeypatch):
    """A hostile tenant's many subscriptions to an endpoint that never answers took every place for
    a first handshake, for as long as they hung: another tenant's subscription was never verified."""
    from agents.delivery import dispatcher as dispatcher_module

    monkeypatch.setattr(dispatcher_module, "HANDSHAKE_SLOT_SECONDS", 0.2)
    CountingVerifySink.verified = set()
    kinds = {"hanging": HangingVerifySink, "counting": CountingVerifySink}
    monkeypatch.setattr(target_module, "delivery_kinds", lambda: kinds)
    d = dispatcher([])
    for n in range(3 * 32):
        await d.set_target(f"hostile-{n}", parse_target(f"hostile-{n}", {"delivery": {"kind": "hanging"}}))
    await d.set_target("honest", parse_target("honest", {"delivery": {"kind": "counting"}}))
    await until(lambda: "honest" in CountingVerifySink.verified, 5)
    await d.close()


class ConcurrentSink(Sink):
    """A kind of up to 4 writes at once that counts them, and holds each until it is let go."""

    class Config(ConnectorConfig):
        max_concurrency: int = 4

    writing = 0
    most = 0
    written: list[str] = []
    go = asyncio.Event()

    async def write(self, batch):
        cls = ConcurrentSink
        cls.writing += 1
        cls.most = max(cls.most, cls.writing)
        try:
            await cls.go.wait()
        finally:
            cls.writing -= 1
        cls.written += [json.loads(r.value)["idempotency_key"] for r in batch]
        return [Outcome.delivered() for _ in batch]


class BatchingSink(ConcurrentSink):
    """The same, taking up to 10 heads per write and waiting 50 ms for a write to fill."""

    max_batch = 10
    batch_wait = 0.05


def head(sub: str, n: int) -> tuple[str, dict]:
    record = delivery(sub, f"{n:032x}", f"event-{n}")
    return delivery_key(record).decode(), pending.new_entry(
        record["idempotency_key"], json.dumps(record), [], ["d", 0, n], 0.0
    )


@pytest.mark.parametrize("kind", [ConcurrentSink, BatchingSink])
async def test_an_idle_subscription_holds_no_task_and_a_busy_one_its_max_concurrency(monkeypatch, kind):
    """Found by bench/bench_national.py: each of 18,000 subscriptions kept its `max_concurrency`
    workers waiting on an empty queue (about 200 MiB of each worker process's RSS, measured at the
    end of the register extract: 717 MiB before, 497 after). A lane's workers now start with its
    heads, at most `max_concurrency` at once, and end when it has none."""
    with structlog.testing.capture_logs() as logged:
        await lanes_come_and_go(monkeypatch, kind)
    assert not [e for e in logged if e["event"] == "delivery.lane_worker_failed"]


async def lanes_come_and_go(monkeypatch, kind) -> None:
    monkeypatch.setattr(target_module, "delivery_kinds", lambda: {"kind": kind})
    ConcurrentSink.written, ConcurrentSink.most, ConcurrentSink.go = [], 0, asyncio.Event()
    reported: list[str] = []
    d = Dispatcher(
        lambda key, entry, outcome: reported.append(entry["key"]), lambda *_: _none(), Egress(Grades(), b"k" * 32), {}
    )
    before = len(asyncio.all_tasks())
    subs = [f"sub-{n}" for n in range(200)]
    for sub in subs:
        target = parse_target(sub, {"delivery": {"kind": "kind"}})
        await d.set_target(sub, target)
        await d.set_status(sub, verified(target))
    await until(lambda: all(d.is_active(sub) and sub in d._lanes for sub in subs))  # lanes open aside
    await until(lambda: len(asyncio.all_tasks()) == before)  # the lanes' openings end; before: 800 more

    burst = 10 if kind is ConcurrentSink else 60  # one subscription's: at most 4 writes at once
    for n in range(burst):
        d.offer(*head("sub-0", n))
    await until(lambda: ConcurrentSink.writing == 4)
    ConcurrentSink.go.set()
    await until(lambda: len(reported) == burst)
    assert ConcurrentSink.most == 4
    assert sorted(reported) == sorted(ConcurrentSink.written) == sorted(f"event-{n}.sub-0" for n in range(burst))

    for n, sub in enumerate(subs):  # every subscription sends, then is idle again
        d.offer(*head(sub, 100 + n))
    await until(lambda: len(reported) == burst + len(subs))
    await until(lambda: len(asyncio.all_tasks()) == before)
    d.offer(*head("sub-1", 999))  # a head after its lane's workers ended starts one again
    await until(lambda: "event-999.sub-1" in reported)
    await d.close()


class StoppingSink(ConcurrentSink):
    """Counts writes made after its stop."""

    after_stop = 0
    stopped = False

    async def write(self, batch):
        if self.stopped:
            StoppingSink.after_stop += 1
        return [Outcome.delivered() for _ in batch]

    async def stop(self) -> None:
        self.stopped = True


async def test_a_head_due_while_the_dispatcher_stops_goes_to_no_stopped_sink(monkeypatch):
    """Hostile review: a lane closed by the dispatcher's stop stayed in its lanes, and a head that fell
    due during the stop (a retry, the batch in hand) started a worker on the stopped sink: its
    failures suspended a healthy subscriber, and could dead-letter a delivery never sent."""
    monkeypatch.setattr(target_module, "delivery_kinds", lambda: {"kind": StoppingSink})
    StoppingSink.after_stop = 0
    d = Dispatcher(lambda *_: None, lambda *_: _none(), Egress(Grades(), b"k" * 32), {})
    before = len(asyncio.all_tasks())
    target = parse_target("sub", {"delivery": {"kind": "kind"}})
    await d.set_target("sub", target)
    await d.set_status("sub", verified(target))
    await until(lambda: "sub" in d._lanes and len(asyncio.all_tasks()) == before)
    await d.close()
    d.offer(*head("sub", 1))
    await until(lambda: len(asyncio.all_tasks()) == before)  # a worker started by mistake has ended
    assert StoppingSink.after_stop == 0 and d.holds(head("sub", 1)[0])


async def _none() -> None:
    return None


class HeldSink(Sink):
    """One write at a time (the default `max_concurrency`), each held until let go; records each
    write's heads as it begins."""

    Config = ConnectorConfig
    writes: list[list[str]] = []
    go = asyncio.Event()

    async def write(self, batch):
        HeldSink.writes.append([json.loads(r.value)["idempotency_key"] for r in batch])
        await HeldSink.go.wait()
        return [Outcome.delivered() for _ in batch]


class SizedBatchSink(HeldSink):
    """The same, up to 10 heads per write, at most `max_batch_bytes` of records (set by the test)."""

    max_batch = 10


async def one_lane(monkeypatch, kind: type[HeldSink]) -> tuple[Dispatcher, list[str]]:
    """A dispatcher with one active subscription, SUB, of `kind`; and the keys it reports settled."""
    monkeypatch.setattr(target_module, "delivery_kinds", lambda: {"kind": kind})
    HeldSink.writes, HeldSink.go = [], asyncio.Event()
    reported: list[str] = []
    d = Dispatcher(
        lambda key, entry, outcome: reported.append(entry["key"]), lambda *_: _none(), Egress(Grades(), b"k" * 32), {}
    )
    target = parse_target(SUB, {"delivery": {"kind": "kind"}})
    await d.set_target(SUB, target)
    await d.set_status(SUB, verified(target))
    await until(lambda: d.is_active(SUB) and SUB in d._lanes)
    return d, reported


def backfilled(sub: str, n: int) -> tuple[str, dict]:
    """A backfill's head: its event says so, as the router writes it (agents/routing/router.py)."""
    record = delivery(sub, f"{n:032x}", f"event-{n}")
    data = record["event"].pop("data")
    record["event"] |= {"backfill": "true", "data": data}  # the attributes before the data, as the router writes
    return delivery_key(record).decode(), pending.new_entry(
        record["idempotency_key"], orjson.dumps(record).decode(), [], ["d", 0, n], 0.0
    )


async def test_a_subscription_being_backfilled_gets_its_live_events_before_its_history(monkeypatch):
    """Found by bench/bench_national.py: the live events of a subscription being backfilled waited in
    its lane behind its history, up to thousands of backfilled events (live p99 2.7 s at national
    scale). Heads are each another person's, so live ones may go first."""
    d, reported = await one_lane(monkeypatch, HeldSink)
    d.offer(*head(SUB, 0))  # live: taken by the lane's one worker, which waits in the write
    await until(lambda: len(HeldSink.writes) == 1)
    for n in range(1, 4):
        d.offer(*backfilled(SUB, n))
    d.offer(*head(SUB, 4))  # live, after the history
    HeldSink.go.set()
    await until(lambda: len(reported) == 5)
    assert [key for write in HeldSink.writes for key in write] == [f"event-{n}.{SUB}" for n in (0, 4, 1, 2, 3)]
    await d.close()


def test_a_lanes_heads_go_in_arrival_order_with_a_backfills_counted_5_s_later(monkeypatch):
    """Hostile review: "a backfilled head that has waited 5 s goes first" held live heads back
    without limit behind a backlog of history older than 5 s. Now a live head never waits longer
    than in arrival order, and a backfilled head at most 5 s longer."""
    from agents.delivery import dispatcher as dispatcher_module

    clock = [100.0]
    monkeypatch.setattr(dispatcher_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    heads = Heads()
    for at, (key, entry) in [
        (100.0, backfilled(SUB, 1)),
        (103.0, head(SUB, 2)),
        (106.0, head(SUB, 3)),
        (107.0, backfilled(SUB, 4)),
        (108.0, backfilled(SUB, 5)),
        (113.5, head(SUB, 6)),
    ]:
        clock[0] = at
        heads.put_nowait((key, entry, 0))
    clock[0] = 200.0  # the time they are taken does not matter, only when they came
    order = []
    while not heads.empty():
        peeked = heads.peek()
        taken = heads.get_nowait()
        assert taken is peeked
        order.append(taken[1]["key"])
    # live 2 (103 < 105), backfilled 1 (105 < 106), live 3 (106 < 112), backfilled 4 and 5 (112, 113 < 113.5), live 6
    assert order == [f"event-{n}.{SUB}" for n in (2, 1, 3, 4, 5, 6)]


def test_only_a_deliverys_attributes_mark_it_a_backfills():
    """An event whose data holds the text of the attribute is not taken for a backfill's."""
    _, entry = head(SUB, 1)
    record = orjson.loads(entry["record"])
    record["event"]["data"] = {"note": {"backfill": "true"}}
    entry["record"] = orjson.dumps(record).decode()
    assert not is_history(entry)
    assert is_history(backfilled(SUB, 2)[1])
    # As the router writes them: a backfill's router adds the attribute (agents/routing/router.py).
    for attributes, history in (({"id": "e-1"}, False), ({"id": "e-1", "backfill": "true"}, True)):
        written = delivery_writer("e-1", "f" * 32, attributes, "event")(
            SimpleNamespace(id=SUB, id_bytes=SUB.encode()), {}
        )
        assert is_history(pending.new_entry(f"e-1.{SUB}", written.value.decode(), [], ["d", 0, 0], 0.0)) is history


def padded(sub: str, n: int, pad: int) -> tuple[str, dict]:
    key, entry = head(sub, n)
    record = json.loads(entry["record"])
    record["event"]["data"]["pad"] = "x" * pad
    entry["record"] = json.dumps(record)
    return key, entry


async def test_a_head_that_does_not_fit_a_write_goes_first_in_the_next(monkeypatch):
    """Hostile review: a head that did not fit a write's `max_batch_bytes` was put back behind the
    others (and, once heads were ordered by when they came, lost its place): it now stays first."""
    heads = [head(SUB, 0), head(SUB, 1), padded(SUB, 2, 2000), head(SUB, 3), head(SUB, 4)]
    small = max(len(entry["record"]) for _, entry in heads if len(entry["record"]) < 1000)
    # Two small heads fit a write; the large one fits alone, with no other.
    monkeypatch.setattr(SizedBatchSink, "max_batch_bytes", 2 * small + 10)
    d, reported = await one_lane(monkeypatch, SizedBatchSink)
    d.offer(*heads[0])  # taken alone by the lane's one worker, which waits in the write
    await until(lambda: len(HeldSink.writes) == 1)
    for key, entry in heads[1:]:
        d.offer(key, entry)
    HeldSink.go.set()
    await until(lambda: len(reported) == 5)
    assert HeldSink.writes == [[f"event-{n}.{SUB}" for n in write] for write in ([0], [1], [2], [3, 4])]
    await d.close()


def test_an_idle_lanes_queue_costs_a_couple_of_hundred_bytes_not_kilobytes():
    """Found in a national run's worker (tracemalloc): every lane's empty queue held two deques
    and an event, 2.3 KB each, about 40 MiB of 18,000 mostly idle lanes."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        queues = [Heads() for _ in range(2000)]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not tracing:
            tracemalloc.stop()
    assert len(queues) == 2000 and grown / 2000 < 256, f"{grown / 2000:,.0f} bytes an idle queue"
