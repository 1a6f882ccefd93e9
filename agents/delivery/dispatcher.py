"""The in-memory side of delivery: when each pending head goes out, and through which lane.

One `Lane` per active subscription: its own sink, made by the subscription's delivery kind
(a webhook sink with its own keep-alive pool, a Kafka sink writing to the subscriber's topic,
batch files, or a plug-in's: connectors.api), its own queue and up to the sink's `max_concurrency`
workers (started as heads come, ended when the queue is empty), each handing the sink up to
`max_batch` heads at a time. A slow or failing subscriber fills only its own lane, so no
other subscriber waits for it (no head-of-line blocking). Everything here can be rebuilt
from Kafka: the heads come from the delivery records and the pending topic (agents/delivery/queues.py),
subscriptions and their verification status from their compacted topics.

Only the head of a (subscription, person) queue is ever offered; the next is offered when
the head's outcome has been applied (`Report`, in this process: agents/delivery/queues.py).
That gives per-person order, retries included.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import cast

import structlog

from agents.delivery.breaker import CLOSED, OPENED, Breaker
from agents.delivery.egress import Egress
from agents.delivery.target import Target
from agents.subscriptions import windows
from bus.malformed import MALFORMED
from connectors.api import Context, DeadLetters, Outcome, Output, Sink, SinkRecord, StateStore
from connectors.kafka_sink.config import subscriber_topic
from connectors.pull.sink import pull_topic

log = structlog.get_logger(__name__)

Report = Callable[[str, dict, Outcome], None]  # (queue key, entry, outcome)
WITHHELD = Outcome.rejected(
    "protection.withheld", "the person's address protection withholds it from this subscription"
)
MALFORMED_RECORD = Outcome.rejected("delivery.malformed", "delivery record is not delivery JSON with person and event")
UNANSWERED = Outcome.retry("delivery.unanswered")  # a place kept for the sink's outcome
HANDSHAKES_AT_ONCE = 32  # first verification handshakes in flight per worker process, all subscriptions together
# The longest one of them may hold its place: an endpoint that hangs holds back no one long.
HANDSHAKE_SLOT_SECONDS = 20.0
SaveStatus = Callable[[str, dict], Awaitable[None]]  # (subscription, status record)


def subscription_of(queue_key: str) -> str:
    return queue_key.rsplit("/", 1)[0]  # pseudonyms are hex, so the last "/" separates them


def make_sink(target: Target, extras: dict) -> Sink:
    """The subscription's sink, of its delivery kind; `extras`: what the bus lends it (connectors.api.Context),
    a copy of its own, whose topic writer writes only to the subscriber's own topic."""
    # The delivery stage writes outcomes, dead letters and the ledger itself: the sink only sends.
    lent = dict(extras)
    own = {
        subscriber_topic(lent.get("subscriber_topic_prefix", ""), target.subscription),
        pull_topic(lent.get("pull_topic_prefix", ""), target.subscription),
    }
    for name in ("topic_writer", "ensure_topic", "ensure_pull_topic"):
        if name in lent:
            lent[name] = _only_own_topic(lent[name], own)
    log_ = log.bind(subscription=target.subscription)
    context = Context(target.subscription, Output(), DeadLetters(), StateStore(), log_, lent, target.subscriber)
    return target.sink_class(target.config, context)


def _only_own_topic(lent: Callable[..., Awaitable[None]], own: set[str]) -> Callable[..., Awaitable[None]]:
    async def on_own_topic(topic: str, *args) -> None:
        if topic not in own:
            raise PermissionError("a subscription's sink touches only the subscriber's own topic")
        await lent(topic, *args)

    return on_own_topic


Head = tuple[str, dict, int]  # (queue key, entry, token)
HISTORY_WAIT_SECONDS = 5.0  # a backfilled head goes behind the live heads that come this long after it


def is_history(entry: dict) -> bool:
    """Whether the delivery is a backfill's (agents/routing/backfill.py): its event's attribute
    `backfill` says so. Only the attributes are looked at, not the event's data, which comes
    after them in the record the router writes (agents/routing/router.py)."""
    record = entry["record"]
    return record.find('"backfill":"true"', 0, max(record.find('"data":'), 0)) >= 0


class Heads:
    """A lane's heads waiting to be sent: in arrival order, with a backfill's heads counted as
    come HISTORY_WAIT_SECONDS later than they came. So a subscription being backfilled gets its
    live events before the history that came up to 5 s before them; a live head waits behind
    no head it would not have waited behind in arrival order, and a backfilled one goes behind
    at most the live heads that came within 5 s after it. Each head is another person's (only
    a queue's head is offered): the order between them is free."""

    def __init__(self) -> None:
        # Each made when first needed (a deque at its first head, the event at the first wait),
        # then kept: made at once, the two empty deques and the event were 2.3 KB a lane, about
        # 40 MiB of a national worker process (18,000 lanes, most of them idle).
        self._live: deque[tuple[float, Head]] | None = None  # (put at, head)
        self._history: deque[tuple[float, Head]] | None = None
        self._added: asyncio.Event | None = None

    def put_nowait(self, head: Head) -> None:
        if is_history(head[1]):
            if self._history is None:
                self._history = deque()
            heads = self._history
        else:
            if self._live is None:
                self._live = deque()
            heads = self._live
        heads.append((time.monotonic(), head))
        if self._added is not None:
            self._added.set()

    def _next(self) -> deque[tuple[float, Head]] | None:
        live, history = self._live, self._history
        if not live or not history:
            return live or history
        return live if live[0][0] < history[0][0] + HISTORY_WAIT_SECONDS else history

    def peek(self) -> Head:
        """The head `get_nowait` would take."""
        if not (heads := self._next()):
            raise asyncio.QueueEmpty
        return heads[0][1]

    def get_nowait(self) -> Head:
        if not (heads := self._next()):
            raise asyncio.QueueEmpty
        return heads.popleft()[1]

    def empty(self) -> bool:
        return not self._live and not self._history

    async def wait_put(self) -> None:
        """Until a head waits."""
        while self.empty():
            if self._added is None:
                self._added = asyncio.Event()
            self._added.clear()
            await self._added.wait()


class Lane:
    """Up to `max_concurrency` workers sending the subscription's heads, each `(queue key, entry, token)`.

    A worker is started when a head is put in and fewer are running, and ends when it finds the
    queue empty: an idle subscription holds no task. (With 18,000 subscriptions, their workers
    waiting on empty queues were about 200 MiB of each worker process, bench/bench_national.py.)

    Before each attempt the dispatcher is asked whether the head is still current (`may_send`:
    its token is the latest offer, its partition is not being handed over, and its breaker lets
    it go), and an attempt still on its way for the same queue key is waited for, so a person's
    events reach the subscriber in order even around a rebalance. Live heads go before a
    backfill's that came up to 5 s before them (`Heads`)."""

    def __init__(
        self,
        target: Target,
        report: Callable[[str, dict, int, Outcome, bool], None],
        sink: Sink,
        egress: Egress,
        may_send: Callable[[str, int], bool],
        sending: dict[str, asyncio.Event],
    ):
        self.target = target
        self._may_send = may_send  # False: stale (superseded or dropped) or its breaker holds it back
        self._sending = sending  # queue key -> set when its attempt on the way has ended (shared by all lanes)
        self.sink = sink
        self.egress = egress
        self.queue = Heads()
        self.hold_until = 0.0  # the subscriber's Retry-After applies to the whole lane
        self._report = report
        self._collecting = asyncio.Lock()  # one worker gathers a batch at a time (a kind with `batch_wait`)
        self._workers: set[asyncio.Task] = set()
        self._closed = False

    def put(self, head: Head) -> None:
        """A head to send; a worker is started for it unless all `max_concurrency` are running, or
        the lane is closed (its sink stopped: the head waits for the next start, hostile review)."""
        self.queue.put_nowait(head)
        if not self._closed and len(self._workers) < self.sink.max_concurrency:
            self._workers.add(asyncio.create_task(self._work()))

    async def _work(self) -> None:
        try:
            await self._send_until_empty()
        except Exception:  # a fault of the bus's own (a sink's are outcomes): said, not lost in an unawaited task
            log.exception("delivery.lane_worker_failed", subscription=self.target.subscription)
        finally:  # at once, not in a done callback: a head put in meanwhile would find no room for a worker
            self._workers.discard(cast(asyncio.Task, asyncio.current_task()))

    async def _send_until_empty(self) -> None:
        while not self.queue.empty():
            if self.sink.batch_wait > 0:
                # One worker waits for a batch to fill while the others send theirs: heads that come
                # during the wait all join that batch, rather than each idle worker's own small one.
                async with self._collecting:
                    if self.queue.empty():
                        return  # the worker before took them
                    batch = [self.queue.get_nowait()]
                    await self._fill(batch)
            else:
                batch = [self.queue.get_nowait()]
                self._take_waiting(batch)
            wait = self.hold_until - time.time()
            if wait > 0:
                await asyncio.sleep(wait)  # the subscriber asked for this pause (Retry-After); checks come after it
            if len(batch) == 1:
                await self._send_one(*batch[0])
            else:
                await self._send_batch(batch)

    def _take_waiting(self, batch: list[Head]) -> bool:
        """Several persons' heads at once, for a batching kind: those waiting now, up to the kind's
        `max_batch` and `max_batch_bytes`. False once the batch is full."""
        limit, queue, most_bytes = self.sink.max_batch, self.queue, self.sink.max_batch_bytes
        size = sum(len(entry["record"]) for _, entry, _ in batch) if most_bytes else 0
        while len(batch) < limit and not queue.empty():
            if most_bytes:
                size += len(queue.peek()[1]["record"])
                if size > most_bytes:
                    # Left for the next write: a write that does not fit one request would send
                    # its later requests long after their protection check.
                    return False
            batch.append(queue.get_nowait())
        return len(batch) < limit

    async def _fill(self, batch: list[Head]) -> None:
        """The heads waiting now, and those that come within the kind's `batch_wait`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.sink.batch_wait
        while self._take_waiting(batch) and (left := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(left):
                    await self.queue.wait_put()  # taken, with the size check, by _take_waiting
            except TimeoutError:
                return

    async def _send_one(self, key: str, entry: dict, token: int) -> None:
        """One head (every head of a kind with `max_batch` 1, the webhook's hot path)."""
        while (earlier := self._sending.get(key)) is not None:
            await earlier.wait()  # an earlier attempt for this person is still on its way: it arrives first
        if not self._may_send(key, token):
            return
        self._sending[key] = ended = asyncio.Event()  # no await between the check and this claim
        try:
            outgoing = self._outgoing(entry)
            if isinstance(outgoing, Outcome):
                outcome = outgoing
            else:
                if self.sink.takes_delivery_records:
                    [outcome] = await self.sink.write([_delivery_record(entry)])
                else:
                    outcome = await self.sink.write_delivery(outgoing, _headers(entry))
                if not isinstance(outcome, Outcome):
                    raise TypeError("the sink's answer is not an Outcome")
        except Exception as exc:  # a sink's own fault: retried as a failed attempt, never a dead worker
            log.error("delivery.attempt_failed", idempotency_key=entry["key"], error=type(exc).__name__)
            outcome = Outcome.retry("delivery.internal_error")
        finally:
            del self._sending[key]
            ended.set()
        self._settle(key, entry, token, outcome)

    async def _send_batch(self, batch: list[Head]) -> None:
        """Several heads, each a different person's, in as few `write` calls as the claims allow."""
        while batch:
            claimed, later = [], []
            for key, entry, token in batch:
                if key in self._sending:  # an earlier attempt for this person is still on its way
                    later.append((key, entry, token))
                elif self._may_send(key, token):
                    self._sending[key] = asyncio.Event()  # no await between the check and this claim
                    claimed.append((key, entry, token))
            if claimed:
                try:
                    outcomes = await self._attempt([entry for _, entry, _ in claimed])
                except Exception as exc:  # a sink's own fault: retried as a failed attempt, never a dead worker
                    log.error(
                        "delivery.attempt_failed", subscription=self.target.subscription, error=type(exc).__name__
                    )
                    outcomes = [Outcome.retry("delivery.internal_error")] * len(claimed)
                finally:
                    for key, _, _ in claimed:
                        self._sending.pop(key).set()
                answers: set[int] = set()  # one answer given to several heads (a batch's request) is one attempt
                for (key, entry, token), outcome in zip(claimed, outcomes, strict=True):
                    self._settle(key, entry, token, outcome, counted=id(outcome) not in answers)
                    answers.add(id(outcome))
            if later and (earlier := self._sending.get(later[0][0])) is not None:
                await earlier.wait()  # holding no claim of ours, so no two workers wait on each other
            batch = later

    def _settle(self, key: str, entry: dict, token: int, outcome: Outcome, counted: bool = True) -> None:
        if getattr(outcome, "retry_after", None):  # capped as pending.decide caps it
            hold = min(outcome.retry_after, max(self.target.retry_schedule, default=0.0))
            self.hold_until = max(self.hold_until, time.time() + hold)
        try:
            self._report(key, entry, token, outcome, counted)
        except Exception:  # the head stays pending and is offered again after a restart
            log.exception("delivery.report_failed", idempotency_key=entry["key"])

    def _outgoing(self, entry: dict) -> dict | Outcome:
        """The delivery as it may leave now, or the outcome that settles it here: withheld by the
        protection rule, or malformed. A sink gets the event and its idempotency key: nothing of
        the bus's own pseudonym of the person (the record's `person`)."""
        target = self.target
        try:
            delivery = self.egress.outgoing(entry["record"], target.subscription, target.public_body, target.national)
        except MALFORMED:
            return MALFORMED_RECORD
        if delivery is None:
            return WITHHELD  # the person's grade forbids it: never sent
        # What the ledger keeps of a delivery that arrives, for the person's access report
        # (agents/person_report.py): whose, which event type, which fields; never a value.
        event = delivery["event"]
        entry["sent"] = {"person": delivery.pop("person"), "type": event["type"], "fields": _paths(event.get("data"))}
        return delivery

    async def _attempt(self, entries: list[dict]) -> list[Outcome]:
        """One outcome per entry, in order; those not settled by `_outgoing` go to the sink in one `write`."""
        outcomes: list[Outcome] = []
        places: list[int] = []
        records: list[SinkRecord] = []
        deliveries: list[tuple[dict, list[tuple[str, bytes]]]] = []
        for entry in entries:
            outgoing = self._outgoing(entry)
            if isinstance(outgoing, Outcome):
                outcomes.append(outgoing)
                continue
            places.append(len(outcomes))
            if self.sink.takes_delivery_records:
                records.append(_delivery_record(entry))
            else:
                deliveries.append((outgoing, _headers(entry)))
            outcomes.append(UNANSWERED)
        written: list[Outcome] = []
        if records:
            written = await self.sink.write(records)
        elif deliveries:
            written = await self.sink.write_deliveries(deliveries)
        if len(written) != len(places) or not all(isinstance(outcome, Outcome) for outcome in written):
            raise TypeError(f"the sink answered {len(written)} outcomes for {len(places)} records, or not Outcomes")
        for at, outcome in zip(places, written, strict=True):
            outcomes[at] = outcome
        return outcomes

    async def close(self) -> None:
        self._closed = True
        workers = list(self._workers)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await stop_quietly(self.sink)


def _paths(data) -> list[str]:
    """The field paths of a delivery's `data` (`newAddress.streetName`), sorted: names, never values."""
    paths: list[str] = []
    if isinstance(data, dict):
        _collect_paths(data, "", paths)
        paths.sort()
    return paths


def _collect_paths(data: dict, prefix: str, paths: list[str]) -> None:
    for name, value in data.items():
        if isinstance(value, dict) and value:
            _collect_paths(value, f"{prefix}{name}.", paths)
        else:
            paths.append(f"{prefix}{name}")


def _delivery_record(entry: dict) -> SinkRecord:
    """For a kind that takes the delivery record itself (the pull kind: the protection rule runs
    again when the subscriber fetches it), keyed by the bus's pseudonym of the person."""
    return SinkRecord(entry["sent"]["person"].encode(), entry["record"].encode(), _headers(entry))


def _headers(entry: dict) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in entry["headers"]]


async def stop_quietly(sink: Sink, timeout: float = 30.0) -> None:
    """A kind's `stop`, bounded in time, its failure logged: never the delivery stage's failure."""
    try:
        async with asyncio.timeout(timeout):
            await sink.stop()
    except Exception as exc:
        log.warning("delivery.sink_stop_failed", subscription=sink.context.instance, error=type(exc).__name__)


class Dispatcher:
    START_RETRY_SECONDS = 30.0  # a sink that could not start is tried again this much later
    START_TIMEOUT_SECONDS = 30.0  # a sink's start that takes longer counts as failed

    def __init__(
        self,
        report: Report,
        save_status: SaveStatus,
        egress: Egress,
        sink_extras: dict | None = None,
        breaker: Breaker | None = None,
    ):
        self._report = report
        self.breaker = breaker or Breaker(failures=20, probe_interval=30.0)
        self._probes: dict[str, str] = {}  # subscription -> the queue key of its probe on its way
        self._egress = egress
        self._save_status = save_status
        self._sink_extras = sink_extras or {}
        self.targets: dict[str, Target] = {}
        self.status: dict[str, dict] = {}
        self.heads: dict[str, tuple[dict, int]] = {}  # queue key -> (head entry, token)
        self._waiting: dict[str, set[str]] = defaultdict(set)  # subscription -> heads held back
        self._heap: list[tuple[float, int, str]] = []
        self._tokens = itertools.count()
        self._lanes: dict[str, Lane] = {}
        self._sending: dict[str, asyncio.Event] = {}  # queue key -> its attempt on the way (Lane)
        self._leaving: set[int] = set()  # partitions being handed over: nothing more of theirs is sent
        self._verifying: dict[str, asyncio.Task] = {}  # subscription -> its handshake while it runs
        # A worker starting with thousands of new subscriptions (a national bus: 18,000) would
        # otherwise send every handshake at once, and time most of them out on its own event loop.
        self._handshakes = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
        self._background: set[asyncio.Task] = set()
        self._start_retries: dict[str, asyncio.Task] = {}  # subscription -> its sink's next start
        self._opening: dict[str, asyncio.Task] = {}  # subscription -> its lane's sink, starting
        self._window_open: dict[str, bool] = {}  # subscriptions with windows: open now?
        self._window_change: dict[str, float] = {}  # ... and when that next changes (epoch seconds)
        self._next_window_change: float | None = None  # the earliest of those: run() wakes then
        self._wake = asyncio.Event()

    # --- pending heads ------------------------------------------------------------------

    def offer(self, key: str, entry: dict) -> None:
        """`entry` is now the head of `key`'s queue; it goes out at entry["due"]."""
        token = next(self._tokens)
        self.heads[key] = (entry, token)
        if entry["due"] <= time.time():
            self._release(key, entry, token)  # due now: no trip through the heap
        else:
            heapq.heappush(self._heap, (entry["due"], token, key))
            self._wake.set()

    def _release(self, key: str, entry: dict, token: int) -> None:
        """A due head goes to its subscription's lane, or waits for the subscription to be active
        and its breaker closed (while open, only a probe goes: agents/delivery/breaker.py)."""
        sub = subscription_of(key)
        lane = self._lanes.get(sub) if self.is_active(sub) else None
        if lane is None or (self.breaker.is_open(sub) and not self._take_probe(sub, key)):
            self._wait(sub, key)
        else:
            if waiting := self._waiting.get(sub):  # on its way: no longer held (see holds())
                waiting.discard(key)
            lane.put((key, entry, token))

    def _take_probe(self, sub: str, key: str) -> bool:
        if not self.breaker.take_probe(sub):
            return False
        self._probes[sub] = key
        return True

    def _may_send(self, key: str, token: int) -> bool:
        """Asked by the lane just before an attempt. A head offered anew since it was queued, or dropped
        with its partition, is not sent (stale: it could overtake what came after it); a head queued
        before its breaker opened waits now."""
        sub = subscription_of(key)
        head = self.heads.get(key)
        if head is None or head[1] != token or head[0]["source"][1] in self._leaving:
            if self._probes.get(sub) == key:
                self._forget_probe(sub)  # the probe will not go: another may
            return False
        if not self.breaker.is_open(sub) or self._probes.get(sub) == key:
            return True
        self._wait(sub, key)
        return False

    def _forget_probe(self, sub: str) -> None:
        """The probe on its way will bring no outcome (stale, or its lane closed): the next may go."""
        self._probes.pop(sub, None)
        self.breaker.cancel_probe(sub)
        self._wake.set()

    def _wait(self, sub: str, key: str) -> None:
        """`key`'s head waits for its subscription; the run loop must know, to time the next probe."""
        self._waiting[sub].add(key)
        self._wake.set()

    def _outcome(self, key: str, entry: dict, token: int, outcome: Outcome, counted: bool = True) -> None:
        """An attempt's outcome (from a lane): the breaker first (unless another head of the same
        request counted it already), so the queue's next head already meets its new state, then the
        queue (agents/delivery/queues.py). The outcome of a stale attempt (its partition was
        dropped, or its head offered anew meanwhile) is not the queue's: the current offer goes out
        and brings its own."""
        sub = subscription_of(key)
        self._probes.pop(sub, None)
        change = self.breaker.record(sub, outcome) if counted else None
        if change == OPENED:
            log.warning(
                "delivery.subscription_suspended",
                subscription=sub,
                reason=outcome.reason,
                failures=self.breaker.failures,
                probe_interval=self.breaker.probe_interval,
            )
            self._save_suspension(sub, {"since": time.time(), "reason": outcome.reason})
        head = self.heads.get(key)
        if head is not None and head[1] == token:
            self._report(key, entry, outcome)
        self._wake.set()  # the next probe's time moved, or no probe is on its way any more
        if change == CLOSED:
            log.info("delivery.subscription_resumed", subscription=sub)
            self._save_suspension(sub, None)
            self._requeue_waiting(sub)

    def _probing(self) -> list[str]:
        """Suspended subscriptions that are active and have heads waiting: those a probe may go to."""
        return [
            sub
            for sub, keys in self._waiting.items()
            if keys and sub in self._lanes and self.breaker.is_open(sub) and self.is_active(sub)
        ]

    def _probe(self) -> None:
        """For each open breaker whose probe is due, one waiting head goes out."""
        for sub in self._probing():
            keys = self._waiting[sub]
            keys.intersection_update(self.heads)  # a head settled meanwhile is not waiting any more
            key = min(keys, default=None)
            if key is not None and self._take_probe(sub, key):
                keys.discard(key)
                self._lanes[sub].put((key, *self.heads[key]))

    def _save_suspension(self, sub: str, suspended: dict | None) -> None:
        status = {**(self.status.get(sub) or {}), "suspended": suspended, "at": time.time()}
        self.status[sub] = status
        self._in_background(self._save_status(sub, status))

    def _requeue_waiting(self, sub: str) -> None:
        """The subscription's waiting heads go out again, each at its due time."""
        for key in self._waiting.pop(sub, ()):
            if key in self.heads:
                entry, token = self.heads[key]
                heapq.heappush(self._heap, (entry["due"], token, key))
        self._wake.set()

    def holds(self, key: str) -> bool:
        """Whether `key`'s head is held here, waiting for its subscription or its due time: not on its
        way to the subscriber, so another entry may go before it."""
        head = self.heads.get(key)
        return head is not None and (key in self._waiting.get(subscription_of(key), ()) or head[0]["due"] > time.time())

    def done(self, key: str) -> None:
        """`key`'s queue is empty."""
        self.heads.pop(key, None)

    async def let_go(self, partitions: set[int], timeout: float = 30.0) -> None:
        """Before `partitions` are handed over: nothing more of theirs goes out from here, and the
        attempts already on their way are waited for (up to `timeout`) and their outcomes applied,
        so the handover's last commit covers them and the new owner's sends do not overtake them.
        Their heads are dropped with the queues (`drop_partitions`)."""
        self._leaving |= partitions
        on_way = [
            ended
            for key, ended in self._sending.items()
            if (head := self.heads.get(key)) is not None and head[0]["source"][1] in partitions
        ]
        if on_way:
            _, late = await asyncio.wait([asyncio.ensure_future(ended.wait()) for ended in on_way], timeout=timeout)
            if late:
                log.warning("delivery.handover_attempts_on_way", attempts=len(late), timeout=timeout)
                for waiter in late:
                    waiter.cancel()
        # What the sinks hold back (an open batch file) is made visible first: the new owner's
        # records for the same persons must not be seen before these.
        await asyncio.gather(*(self._flush(lane) for lane in list(self._lanes.values())))

    @staticmethod
    async def _flush(lane: Lane, timeout: float = 30.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                await lane.sink.flush()
        except Exception as exc:
            log.warning("delivery.sink_flush_failed", subscription=lane.target.subscription, error=type(exc).__name__)

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget heads of partitions this worker no longer owns (after a rebalance)."""
        self._leaving -= partitions
        for key in [k for k, (e, _) in self.heads.items() if e["source"][1] in partitions]:
            del self.heads[key]
            self._waiting.get(subscription_of(key), set()).discard(key)

    async def run(self) -> None:
        while True:
            now = time.time()
            while self._heap and self._heap[0][0] <= now:
                _, token, key = heapq.heappop(self._heap)
                head = self.heads.get(key)
                if head is None or head[1] != token:
                    continue  # superseded by a later offer
                self._release(key, *head)
            self._probe()
            await self._windows_passed(now)
            self._wake.clear()
            probing = self.breaker.next_probe(self._probing())
            window = self._next_window_change
            deadlines = [t for t in (self._heap[0][0] if self._heap else None, probing, window) if t is not None]
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    # --- subscriptions ------------------------------------------------------------------

    def is_active(self, sub: str) -> bool:
        target, status = self.targets.get(sub), self.status.get(sub) or {}
        return (
            target is not None
            and not target.paused
            and self._window_open.get(sub, True)
            and status.get("fingerprint") == target.fingerprint
            and status.get("verified", False)
            and not status.get("disabled_reason")
        )

    def is_waiting(self, sub: str) -> bool:
        """Takes no deliveries now: not active, or its breaker is open (only a probe goes)."""
        return not self.is_active(sub) or self.breaker.is_open(sub)

    async def set_target(self, sub: str, target: Target | None) -> None:
        if self.targets.get(sub) == target:
            return
        self.breaker.forget(sub)  # deleted, or changed (a new URL deserves a fresh start)
        if target is None:
            self.targets.pop(sub, None)
        else:
            self.targets[sub] = target
        self._follow_window(sub, time.time())
        await self._refresh(sub, lane_changed=True)

    # --- delivery windows ------------------------------------------------------------------

    def _follow_window(self, sub: str, now: float) -> None:
        """Whether `sub`'s window is open now, and when that next changes (run() wakes then)."""
        target = self.targets.get(sub)
        if target is None or not target.windows:
            self._window_open.pop(sub, None)
            if self._window_change.pop(sub, None) is not None:
                self._next_window_change = min(self._window_change.values(), default=None)
            return
        self._window_open[sub] = windows.is_open(target.windows, now)
        change = windows.next_change(target.windows, now)
        if change is None:
            self._window_change.pop(sub, None)
        else:
            self._window_change[sub] = change
        self._next_window_change = min(self._window_change.values(), default=None)
        self._wake.set()

    async def _windows_passed(self, now: float) -> None:
        """Open or close the lanes whose window opened or closed: a closed one's deliveries wait,
        in order (stored, as a paused subscription's); an opened one's go out, purges first."""
        if self._next_window_change is None or self._next_window_change > now:
            return  # the run loop's common case: nothing to scan
        for sub in [s for s, change in self._window_change.items() if change <= now]:
            self._follow_window(sub, now)
            log.info("delivery.window", subscription=sub, open=self._window_open.get(sub, True))
            await self._refresh(sub, lane_changed=False)

    async def set_status(self, sub: str, status: dict | None) -> None:
        if self.status.get(sub) == status:
            return
        if status is not None and status.get("at", 0) < (self.status.get(sub) or {}).get("at", 0):
            # An older record read back from the status topic (the handshake's, say) after this worker
            # already decided later (disabled the subscription): it must not make it active again.
            return
        self.status[sub] = status or {}
        suspended = (status or {}).get("suspended")
        if suspended and not self.breaker.is_open(sub):  # suspended before this worker started: probe first
            self.breaker.open(sub, suspended.get("since") or time.time())
        await self._refresh(sub, lane_changed=False)

    def disable(self, sub: str, reason: str) -> None:
        """At once no head of `sub` goes out any more; the status is saved and the lane closed in the
        background (the caller may be one of the lane's own workers)."""
        target = self.targets.get(sub)
        if target is None:
            return
        status = {"fingerprint": target.fingerprint, "verified": True, "disabled_reason": reason, "at": time.time()}
        log.warning("delivery.subscription_disabled", subscription=sub, reason=reason)
        self.status[sub] = status
        self._in_background(self._save_disabled(sub, status))

    async def _save_disabled(self, sub: str, status: dict) -> None:
        await self._save_status(sub, status)
        await self._refresh(sub, lane_changed=False)

    async def _refresh(self, sub: str, lane_changed: bool) -> None:
        """Brings `sub`'s lane in line with its target and status. No kind's code is awaited here (the
        followers of status and grades call it, and a grade must never wait for a subscriber's
        server): a lane's sink starts and stops in tasks of their own."""
        target = self.targets.get(sub)
        if target is None and (verifying := self._verifying.pop(sub, None)) is not None:
            verifying.cancel()  # a deleted subscription's handshake stops at once, not at its next attempt
        old = self._lanes.get(sub)
        if old is not None and (lane_changed or not self.is_active(sub)):
            del self._lanes[sub]
            self._in_background(old.close())
            self._forget_probe(sub)
            # Heads queued in or in flight on the old lane go out again (same webhook-id).
            self._waiting[sub].update(k for k in self.heads if subscription_of(k) == sub)
        if lane_changed and (opening := self._opening.pop(sub, None)) is not None:
            opening.cancel()  # a sink of the old target, still starting
        if target is not None and (self.status.get(sub) or {}).get("fingerprint") != target.fingerprint:
            self._start_verification(target)
        if self.is_active(sub):
            if sub in self._lanes:
                self._lane_ready(sub)
            elif sub not in self._opening:
                self._opening[sub] = asyncio.create_task(self._open_lane(sub, target))

    def _lane_ready(self, sub: str) -> None:
        if self.breaker.is_open(sub):
            self._wake.set()  # its heads wait; the run loop probes
        else:
            self._requeue_waiting(sub)

    async def _open_lane(self, sub: str, target: Target) -> None:
        """Starts the subscription's sink (at most START_TIMEOUT_SECONDS) and opens its lane. A sink
        that cannot start is tried again in START_RETRY_SECONDS; its heads wait meanwhile."""
        sink = None
        try:
            sink = make_sink(target, self._sink_extras)
            async with asyncio.timeout(self.START_TIMEOUT_SECONDS):
                await sink.start()
        except Exception as exc:  # the kind says why in its log; the error's text may name a path
            log.error("delivery.sink_not_started", subscription=sub, kind=target.kind, error=type(exc).__name__)
            if sink is not None:
                self._in_background(stop_quietly(sink))
            self._start_retries[sub] = asyncio.create_task(self._refresh_later(sub, target))
            return
        except asyncio.CancelledError:
            if sink is not None:
                self._in_background(stop_quietly(sink))
            raise
        finally:
            if self._opening.get(sub) is asyncio.current_task():
                del self._opening[sub]
        if sub in self._lanes or self.targets.get(sub) is not target or not self.is_active(sub):
            self._in_background(stop_quietly(sink))  # changed while it started: the newer refresh decides
            return
        self._lanes[sub] = Lane(target, self._outcome, sink, self._egress, self._may_send, self._sending)
        self._lane_ready(sub)

    async def _refresh_later(self, sub: str, target: Target) -> None:
        await asyncio.sleep(self.START_RETRY_SECONDS)  # a retry timer, not a wait for a condition
        self._start_retries.pop(sub, None)
        if self.targets.get(sub) is target:
            await self._refresh(sub, lane_changed=False)

    def _in_background(self, work) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _start_verification(self, target: Target) -> None:
        running = self._verifying.get(target.subscription)
        if running is not None and not running.done():
            running.cancel()
        task = self._verifying[target.subscription] = asyncio.create_task(self._verify(target))
        task.add_done_callback(functools.partial(self._verification_ended, target.subscription))

    def _verification_ended(self, sub: str, task: asyncio.Task) -> None:
        """A finished handshake's task goes (about 700 bytes each: 18,000 stayed in a national worker)."""
        if self._verifying.get(sub) is task:
            del self._verifying[sub]

    async def _verify(self, target: Target) -> None:
        """The kind's handshake (`Sink.verify`; a webhook's signed validation event must be answered
        with its challenge) before events flow, retried on the subscription's schedule."""
        sink = None
        try:
            sink = make_sink(target, self._sink_extras)
            for attempt in itertools.count():
                try:
                    if attempt == 0:  # a first attempt waits for a place; one that failed goes on its schedule
                        async with self._handshakes, asyncio.timeout(HANDSHAKE_SLOT_SECONDS):
                            outcome = await sink.verify(target.subscription)
                    else:
                        outcome = await sink.verify(target.subscription)
                except Exception as exc:  # the kind's own fault (or it took too long): a failed attempt, tried again
                    outcome = Outcome.retry("delivery.verify_failed", type(exc).__name__)
                if outcome.status == "delivered":
                    break
                log.warning(
                    "delivery.verification_failed",
                    subscription=target.subscription,
                    reason=outcome.reason,
                    attempt=attempt + 1,
                )
                schedule = target.retry_schedule or (10.0,)
                await asyncio.sleep(schedule[min(attempt, len(schedule) - 1)])  # the verification's retry schedule
        except Exception as exc:  # e.g. a kind whose sink cannot be made: the subscription stays unverified
            log.error("delivery.verification_not_started", subscription=target.subscription, error=type(exc).__name__)
            return
        finally:
            if sink is not None:
                await stop_quietly(sink)
        status = {"fingerprint": target.fingerprint, "verified": True, "disabled_reason": None, "at": time.time()}
        log.info("delivery.subscription_verified", subscription=target.subscription)
        await self._save_status(target.subscription, status)
        await self.set_status(target.subscription, status)

    async def close(self) -> None:
        for task in [*self._verifying.values(), *self._start_retries.values(), *self._opening.values()]:
            task.cancel()
        # Out of `_lanes` first: a head due while they close waits (`_release`), as with no lane.
        lanes, self._lanes = list(self._lanes.values()), {}
        # At once: a sink's close may wait (a Kafka producer's flush), and a stop has a time limit.
        await asyncio.gather(*(lane.close() for lane in lanes))
