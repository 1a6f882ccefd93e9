"""The delivery stage's batch logic: per-(subscription, person) queues, outcomes applied in process.

Run by `DeliveryService` (agents/delivery/stage.py), a `BatchService` reading `samband-deliveries`
with `getmany()`. Each queue key `<subscription>/<person>` has an ordered queue whose head alone
is in flight (pending.py holds the rules); the dispatcher sends heads through the subscription's
lane and calls `apply` with each attempt's outcome, in this process.

A queue is either (both kinds are in the worker's memory and count against the limit below)
- *open*: its head went out at once and nothing has failed. Its records stay open
  (offsets.py), so the input offset is not committed past them; a crash reads them again.
  At most `store_after` seconds (SAMBAND_DELIVERY_STORE_AFTER_SECONDS): a queue in memory
  longer is stored, so a slow subscriber never holds back the commit point of others.
- *stored*: it must wait (the subscription is not active: unverified, paused, disabled or
  unknown) or its head is being retried. The queue, with the offset of the last record it
  took (`seen`), is in the compacted topic `<app id>-delivery-pending` (one partition per
  input partition), and its records are settled once that write is acknowledged.

A subscription holds at most `memory_limit` entries (SAMBAND_DELIVERY_MEMORY_PER_SUBSCRIPTION); one
that takes no deliveries now (paused, suspended, outside its window...) takes none more once the
process holds `worker_memory_limit` in all, or one if it holds none, a head to probe with
(SAMBAND_DELIVERY_MEMORY_PER_WORKER; the rule is in memory.py). Once it is full, its
further records of a partition are *left* in the deliveries topic:
a `Behind` record (pending.py: where it resumes, its last record left, how many) is stored
instead, and the records are settled with it. The worker's backlog reader (agent.py) reads the
partition again from the cursor as the subscription gets room, and `take_backlog` takes its
records into stored queues, in order (docs/delivery.md, "Bounded memory").

The common case, a head delivered at the first attempt, writes no pending state and no attempt
record (`samband-delivery-outcomes` logs failed attempts only; a success is its ledger entry):
one ledger entry, batched. The ledger entry and attempt record go to the partition the delivery
was read from (the topics have the deliveries' partition count), which spares the producer's
pure-Python murmur2 of each key (4-8 us). Records are taken in as they are fetched (`accept`); everything they and
`apply` decide is queued and written in the next write cycle (`handle_batch`): outputs first,
then the pending state, then the commit (`committable`), so no state or commit ever gets ahead
of a ledger entry or dead letter.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable

import orjson
import structlog
from aiokafka import ConsumerRecord

from agents import metrics, tracing
from agents.delivery import pending
from agents.delivery.dispatcher import Dispatcher, subscription_of
from agents.delivery.egress import Grades
from agents.delivery.ledger import disclosure_record, ledger_key, ledger_record
from agents.delivery.memory import HeldInMemory
from agents.delivery.offsets import OpenOffsets
from agents.routing.reference import REFERENCE_PERSON
from bus.batches import Write
from bus.malformed import skip_malformed
from bus.state import PartitionedState
from bus.topics import PENDING, TopicNames
from connectors.api import Outcome
from connectors.dead_letters import DeadLetter, DeadLetterSeal

log = structlog.get_logger(__name__)

# Headers of a delivery record worth keeping with the pending entry (and in its dead letter).
KEPT_HEADERS = ("traceparent", "samband-source", "samband-ingested-at")

_METRIC_OUTCOME = {
    pending.DELIVERED: "delivered",
    pending.DEAD: "dead_lettered",
    pending.RETRY: "retry",
    pending.HOLD: "rejected",
}


class DeliveryQueues:
    def __init__(
        self,
        topics: TopicNames,
        dispatcher: Dispatcher,
        seal: DeadLetterSeal,
        grades: Grades,
        clock: Callable[[], float] = time.time,
        store_after: float = 2.0,
        memory_limit: int = 10_000,
        worker_memory_limit: int | None = None,
    ):
        self.topics = topics
        self.grades = grades  # learns a new grade from each purge record (agents/delivery/egress.py)
        self.seal = seal  # every dead letter's value, and every stored entry's record (pending.py), is sealed
        self.dispatcher = dispatcher
        self.clock = clock
        self.stored = PartitionedState(topics.pending, PENDING.configs())
        self.states = [self.stored]
        self.queues: dict[str, list[dict]] = {}  # queue key -> queue, in memory or stored
        self.seen: dict[str, int] = {}  # stored queue key -> offset of the last record it took
        # In-memory queue key -> since when it holds records open; the same in order, with keys gone since.
        self._open_since: dict[str, float] = {}
        self._opened: deque[tuple[float, str]] = deque()
        self.store_after = store_after
        # Entries in the queues, per subscription and in all: a full subscription's further records
        # wait in the deliveries topic.
        self.in_memory = HeldInMemory(memory_limit, worker_memory_limit, dispatcher.is_waiting)
        self.behind: dict[tuple[str, int], pending.Behind] = {}  # (subscription, partition) -> where it resumes
        self.backlog_ready = asyncio.Event()  # a subscription behind may have room: the backlog reader looks
        self.read_from: dict[int, int] = {}  # partition -> the group's committed offset when it was assigned here
        self.offsets = OpenOffsets()
        self.owned: set[int] = set()
        self._outputs: list[Write] = []  # decided by `apply` since the last cycle
        self._changed: dict[str, int] = {}  # stored queue key -> partition, to write in the next cycle
        self._behind_changed: set[tuple[str, int]] = set()  # (subscription, partition) Behind records to write
        self._settled: list[tuple[int, int]] = []  # (partition, offset) durable once this cycle's writes are
        self._flushing: list[tuple[int, int]] = []

    # --- the batch service's cycle ------------------------------------------------------

    @property
    def has_work(self) -> bool:
        return bool(self._outputs or self._changed or self._behind_changed or self._settled)

    def accept(self, records: list[ConsumerRecord]) -> None:
        """Records in, at once: a head whose subscription is active is offered to its lane now;
        what must be written waits for the next cycle."""
        now = self.clock()
        for record in records:
            self._accept(record, now)

    def handle_batch(self, records: list[ConsumerRecord], outputs: list[Write]) -> None:
        """One cycle: `records`, then everything decided since the last cycle, as outputs and pending state."""
        self.accept(records)
        outputs += self._outputs
        self._outputs = []
        for key, partition in self._changed.items():
            self._write(key, partition)
        self._changed = {}
        # After the queues: a cursor is never durable ahead of the entries it took.
        for sub, partition in self._behind_changed:
            self._write_behind(sub, partition)
        self._behind_changed = set()
        self._flushing, self._settled = self._settled, []

    def end_batch(self) -> None:
        pass

    def due(self) -> bool:
        return False  # DeliveryService runs its own cycles (agents/delivery/stage.py)

    def committable(self) -> dict[int, int]:
        """After this cycle's outputs and pending state are acknowledged: partition -> offset to commit."""
        for partition, offset in self._flushing:
            self.offsets.settle(partition, offset)
        self._flushing = []
        return {p: offset for p, offset in self.offsets.committable().items() if p in self.owned}

    def recovered(self, partitions: set[int]) -> None:
        pass  # the stored queues are taken up in `assigned`, for kept partitions too

    def assigned(self, partitions: set[int]) -> None:
        """The stored queues of `partitions` (just recovered or kept) go out again, each head at its due time."""
        self.owned |= partitions
        for partition in partitions:
            for key, value in self.stored.partitions.get(partition, {}).items():
                with skip_malformed(self.stored.topic):
                    if pending.is_behind_key(key):
                        self.behind[(subscription_of(key), partition)] = pending.behind_state(value)
                        self.backlog_ready.set()
                        continue
                    state = pending.opened(pending.stored_state(value), self.seal)
                    self.queues[key], self.seen[key] = state["queue"], state["seen"]
                    self.in_memory.add(subscription_of(key), len(state["queue"]))
                    self.dispatcher.offer(key, state["queue"][0])

    def revoked(self, partitions: set[int]) -> None:
        """Forget the queues of `partitions`: their new owner reads their records from the last commit."""
        self.owned -= partitions
        for key in [k for k, queue in self.queues.items() if queue[0]["source"][1] in partitions]:
            if self.in_memory.add(subscription_of(key), -len(self.queues[key])):
                self.backlog_ready.set()  # another subscription behind may have room now
            del self.queues[key]
            self.seen.pop(key, None)
            self._changed.pop(key, None)
            self._open_since.pop(key, None)
        for key in [k for k, p in self._changed.items() if p in partitions]:  # queues emptied, not yet written
            del self._changed[key]
            self.seen.pop(key, None)
        for sub, partition in [k for k in self.behind if k[1] in partitions]:
            del self.behind[(sub, partition)]
        self._behind_changed = {(s, p) for s, p in self._behind_changed if p not in partitions}
        for partition in partitions:
            self.read_from.pop(partition, None)
        # Offsets settled before are not settled for whoever reads the partition next (this worker too).
        self._settled = [(p, o) for p, o in self._settled if p not in partitions]
        self._flushing = [(p, o) for p, o in self._flushing if p not in partitions]
        self.offsets.drop(partitions)
        self.dispatcher.drop_partitions(partitions)

    # --- records in -----------------------------------------------------------------------

    def _accept(self, record: ConsumerRecord, now: float) -> None:
        key, partition, offset = record.key.decode(), record.partition, record.offset
        self.offsets.read(partition, offset)
        try:
            parsed = orjson.loads(record.value)
            idempotency_key = parsed["idempotency_key"]
            purge = parsed.get("kind") == "purge"
            if purge and isinstance(parsed.get("protection"), str):
                self.grades.learn_from_purge(parsed["person"], parsed["protection"])
        except (ValueError, KeyError, TypeError, AttributeError):
            dead = DeadLetter(
                "delivery.malformed",
                "delivery record is not JSON with an idempotency_key",
                "deliver",
                record.topic,
                partition,
                offset,
                subscription_of(key),
            )
            self._outputs.append(
                (
                    self.topics.deadletter,
                    record.key,
                    self.seal.seal(record.value),
                    dead.headers(list(record.headers or [])),
                )
            )
            self._settled.append((partition, offset))
            return
        sub = subscription_of(key)
        behind = self.behind.get((sub, partition))
        if behind is None and not purge and self.in_memory.full(sub):
            # It falls behind at this record: counted as its first one left, just below.
            behind = self.behind[(sub, partition)] = pending.Behind(cursor=offset, last=offset - 1, left=0)
        # From the cursor on, its records wait in the topic for the backlog reader. One before the
        # cursor (read again after a restart or a rebalance) was taken in before it fell behind, and
        # goes the usual way; so does a purge, which never waits (it goes first, as always).
        if behind is not None and offset >= behind.cursor and not purge:
            if offset > behind.last:  # (else left before a restart, and counted)
                behind.last, behind.left = offset, behind.left + 1
            self._behind_changed.add((sub, partition))
            self._settled.append((partition, offset))  # once the Behind record is written
            return
        entry = _entry(record, idempotency_key, now)
        queue = self.queues.get(key)
        if queue is not None and key not in self.seen:
            # Waits in memory behind its head; stays open.
            self._queue(key, queue, entry, purge)
            return
        self._settled.append((partition, offset))
        if queue is not None:  # stored: the record joins the stored queue, unless it took it before a restart
            if offset > self.seen[key]:
                self._queue(key, queue, entry, purge)
                self.seen[key] = max(self.seen[key], self._seen_at(sub, partition, offset))
                self._changed[key] = partition
            return
        if (seen := self.seen.get(key)) is not None:  # a stored queue emptied, its deletion not yet written
            if offset > seen:
                self.queues[key], self._changed[key] = [entry], partition
                self.seen[key] = max(seen, self._seen_at(sub, partition, offset))
                self.in_memory.add(sub, 1)
                self.dispatcher.offer(key, entry)
            return
        self.queues[key] = [entry]
        self.in_memory.add(sub, 1)
        if self.dispatcher.is_active(sub):
            self._settled.pop()  # goes out at once; open until its outcome is durable
            self._open_since[key] = now
            self._opened.append((now, key))
        else:
            self.seen[key] = self._seen_at(sub, partition, offset)  # must wait for its subscription: stored
            self._changed[key] = partition
        self.dispatcher.offer(key, entry)

    def _seen_at(self, sub: str, partition: int, offset: int) -> int:
        """`seen` for a queue that took the record at `offset`: never at or past the cursor of a
        subscription behind, whose records from there on wait in the topic (only a purge, taken out
        of turn, is past it), so the reader's records are not taken for ones read before."""
        behind = self.behind.get((sub, partition))
        return offset if behind is None else min(offset, behind.cursor - 1)

    def _queue(self, key: str, queue: list[dict], entry: dict, purge: bool) -> None:
        """A purge goes first, so the subscriber deletes the address before anything held arrives: before
        the head too when the head is held (paused, unverified, waiting for a retry), else right after
        it (it may be on its way)."""
        self.in_memory.add(subscription_of(key), 1)
        if not purge:
            queue.append(entry)
        elif self.dispatcher.holds(key):
            queue.insert(0, entry)
            self.dispatcher.offer(key, entry)
        else:
            queue.insert(1, entry)

    def _write_behind(self, sub: str, partition: int) -> None:
        if partition not in self.owned:
            return
        behind = self.behind.get((sub, partition))
        if behind is not None:
            self.stored.set(partition, pending.behind_key(sub), pending.behind_value(behind))
        else:
            self.stored.delete(partition, pending.behind_key(sub))

    def _write(self, key: str, partition: int) -> None:
        if partition not in self.owned:
            return
        queue = self.queues.get(key)
        if queue:
            self.stored.set(partition, key, pending.stored_value(queue, self.seen[key], self.seal))
        else:
            self.seen.pop(key, None)
            self.stored.delete(partition, key)

    # --- outcomes in ----------------------------------------------------------------------

    def apply(self, key: str, entry: dict, outcome: Outcome) -> None:
        """An attempt's outcome for the head `entry` of `key`'s queue (called by the dispatcher's lanes)."""
        sub, partition = subscription_of(key), entry["source"][1]
        if partition not in self.owned:
            return  # the partition moved to another worker while the attempt ran
        now = self.clock()
        result = {
            "idempotency_key": entry["key"],
            "status": outcome.status,
            "reason": outcome.reason,
            "http_status": getattr(outcome, "http_status", None),  # webhook outcomes only
            "retry_after": getattr(outcome, "retry_after", None),
        }
        target = self.dispatcher.targets.get(sub)
        decision = pending.decide(self.queues.get(key) or [], result, target.retry_schedule if target else (), now)
        if decision is None:
            return  # not for the head: a duplicate attempt
        if outcome.status != "delivered":  # a success is in the ledger: the attempt log holds failures only
            attempt = {**result, "at": int(now * 1000)}  # when it was decided: it is written a moment later
            self._outputs.append((self.topics.outcomes, key.encode(), orjson.dumps(attempt), [], partition))
        head, event_id = decision.entry, _event_id(decision.entry, sub)
        metrics.delivery(sub, _METRIC_OUTCOME[decision.action])
        if decision.action == pending.HOLD:
            self.dispatcher.disable(sub, decision.reason)  # before the head is offered again
        stored = key in self.seen
        if decision.action in (pending.RETRY, pending.HOLD):
            if not stored:  # the queue must wait: it is stored, and no longer holds the commit back
                self._store(key, decision.queue, partition)
                stored = True
        elif not stored:
            self._settled.append((partition, head["source"][2]))
        if stored:
            self._changed[key] = partition
        self._record(key, sub, event_id, decision, result, now)
        room = self.in_memory.add(sub, len(decision.queue) - len(self.queues[key]))
        if room and self.behind:  # room again: the reader looks (it checks who)
            self.backlog_ready.set()
        if decision.queue:
            self.queues[key] = decision.queue
            self.dispatcher.offer(key, decision.queue[0])
        else:
            del self.queues[key]
            self._open_since.pop(key, None)
            self.dispatcher.done(key)

    def store_overdue(self) -> None:
        """In-memory queues that have held records open longer than `store_after` seconds (a slow
        subscriber, or a long queue behind one person) are stored, as a retried one is: their records
        no longer hold back the commit point, so a slow subscriber holds back only itself, and a
        crash sends the other subscribers only their last few seconds again."""
        cutoff = self.clock() - self.store_after
        while self._opened and self._opened[0][0] <= cutoff:
            since, key = self._opened.popleft()
            if self._open_since.get(key) == since:  # else settled, stored or dropped since
                queue = self.queues[key]
                self._store(key, queue, queue[0]["source"][1])

    # --- a subscription's backlog, read again from the deliveries topic -----------------------
    #
    # The reader resumes a subscription only when it is down to half its limit (and, while it takes no
    # deliveries, the process down to half its own: memory.py), so that a freed
    # place does not cost a read of the topic each, and only once this worker's group consumer has
    # read the partition up to the cursor: records below it (read again after a restart or a
    # rebalance) must be in their queues before the ones after them are taken.

    def report_memory(self) -> None:
        """The gauges of what each subscription holds in memory and has left in the topic."""
        left: Counter[str] = Counter()
        for (sub, _), behind in self.behind.items():
            left[sub] += behind.left
        for sub in self.in_memory.subscriptions() | set(left):
            metrics.set_delivery_memory(sub, self.in_memory[sub], left[sub])
            if not left[sub]:
                self.in_memory.forget_idle(sub)

    def _reached(self, partition: int) -> int:
        """The offset up to which the group consumer has read `partition` since it was assigned here."""
        return max(self.offsets.next_read(partition), self.read_from.get(partition, -1))

    def starts_unknown(self) -> set[int]:
        """Partitions with a subscription behind whose group consumer has read nothing yet: the
        reader asks the group's committed offset, where that consumer began (`read_from`)."""
        return {p for _, p in self.behind if p in self.owned and p not in self.read_from and self._reached(p) < 0}

    def backlog_wanted(self) -> dict[int, int]:
        """Partition -> offset to read from, where a subscription behind has room again."""
        wanted: dict[int, int] = {}
        for (sub, partition), behind in self.behind.items():
            if (partition in self.owned and self.in_memory.has_room(sub)
                    and behind.cursor <= self._reached(partition)):  # fmt: skip
                wanted[partition] = min(wanted.get(partition, behind.cursor), behind.cursor)
        return wanted

    def take_backlog(self, partition: int, start: int, records: list[ConsumerRecord]) -> None:
        """Records of `partition` read again from `start` on, in order: each subscription behind there
        takes its own (from its cursor to its last record left) while it has room, and is no longer
        behind once it has taken its last one. Its cursor moves past what it has looked at."""
        if partition not in self.owned or not records:
            return
        if records[0].offset > start:
            self.expired(partition, records[0].offset)
        # Only a subscription whose cursor the read began at or before: the records are looked at from `start` on.
        reached = self._reached(partition)
        behind = {
            sub: b
            for (sub, p), b in self.behind.items()
            if p == partition and start <= b.cursor <= reached and not self.in_memory.full(sub)
        }
        full: dict[str, int] = {}  # subscription -> offset of its first record it had no room for
        now = self.clock()
        for record in records:
            key = record.key.decode()
            sub = subscription_of(key)
            b = behind.get(sub)
            if b is None or sub in full or not b.cursor <= record.offset <= b.last:
                continue
            if self.in_memory.full(sub):
                full[sub] = record.offset
                continue
            if self._take(record, key, sub, partition, now):
                b.left = max(0, b.left - 1)
        looked_at = records[-1].offset + 1
        for sub, b in behind.items():
            self._resume_at(sub, partition, full.get(sub, max(b.cursor, min(looked_at, b.last + 1))))

    def expired(self, partition: int, first: int) -> None:
        """The topic now begins at `first`: its retention deleted records left there and not yet taken.
        They are gone; each subscription that lost some resumes at `first` and it is logged (loudly)."""
        for (sub, p), b in list(self.behind.items()):
            if p != partition or b.cursor >= first:
                continue
            log.error("delivery.backlog_expired", subscription=sub, partition=partition, from_offset=b.cursor,
                      to_offset=first - 1, left_before=b.left)  # fmt: skip
            metrics.backlog_expired(sub)
            self._resume_at(sub, partition, first)

    def _resume_at(self, sub: str, partition: int, cursor: int) -> None:
        """Move a subscription's cursor; past its last record left, it is behind no longer (its
        records come straight in from now on). Written in the next cycle either way."""
        behind = self.behind[(sub, partition)]
        behind.cursor = cursor
        self._behind_changed.add((sub, partition))
        if behind.cursor > behind.last:
            del self.behind[(sub, partition)]

    def _take(self, record: ConsumerRecord, key: str, sub: str, partition: int, now: float) -> bool:
        """A record taken from the backlog joins its queue as stored: it was settled when it was left.
        False for a purge (never left: taken in out of turn when it was read) and a record taken before."""
        try:
            parsed = orjson.loads(record.value)
            if parsed.get("kind") == "purge":
                return False
            entry = _entry(record, parsed["idempotency_key"], now)
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            # It was read whole when it was left; a record that is not is the main path's dead letter.
            log.warning(
                "delivery.backlog_record_unreadable", subscription=sub, partition=partition, offset=record.offset
            )
            return False
        queue = self.queues.get(key)
        if queue is not None and key not in self.seen:
            self._store(key, queue, partition)  # in memory, its records open: they are settled with the new one
        if record.offset <= self.seen.get(key, -1):
            return False  # taken before a restart: its stored queue has it
        if queue:
            self._queue(key, queue, entry, purge=False)
        else:  # a new queue, or a stored one emptied whose deletion is not yet written
            self.queues[key] = [entry]
            self.in_memory.add(sub, 1)
            self.dispatcher.offer(key, entry)
        self.seen[key], self._changed[key] = record.offset, partition
        return True

    def _store(self, key: str, queue: list[dict], partition: int) -> None:
        """An in-memory queue becomes stored: written in the next cycle, its records settled once it is."""
        self._open_since.pop(key, None)
        self.seen[key] = self._seen_at(subscription_of(key), partition, max(e["source"][2] for e in queue))
        self._settled += [(partition, e["source"][2]) for e in queue]
        self._changed[key] = partition

    def _record(self, key: str, sub: str, event_id: str, decision: pending.Decision, result: dict, now: float) -> None:
        """The ledger entry, dead letter, metrics and log line of a decision."""
        head = decision.entry
        logged = {"idempotency_key": head["key"], "attempts": head["attempts"], "reason": decision.reason}
        if decision.action == pending.DELIVERED:
            self._ledger(event_id, sub, "delivered", head, result, now)
            if ingested_at := dict(head["headers"]).get(
                "samband-ingested-at"
            ):  # set by ingest (agents/ingest/stage.py)
                metrics.observe_end_to_end_latency(sub, max(0.0, now - float(ingested_at)))
        elif decision.action == pending.DEAD:
            self._dead_letter(key, sub, head, decision.reason, result)
            self._ledger(event_id, sub, "dead_lettered", head, result, now, decision.reason)
            log.warning("delivery.dead_lettered", **logged, **_context(event_id, sub, head))
        elif decision.action == pending.HOLD:
            self._ledger(event_id, sub, "held", head, result, now, decision.reason)
        else:
            log.info("delivery.retry", due_in=round(head["due"] - now, 3), **logged, **_context(event_id, sub, head))

    def _ledger(
        self, event_id: str, sub: str, status: str, entry: dict, result: dict, now: float, reason: str | None = None
    ) -> None:
        value = ledger_record(event_id, sub, status, entry["attempts"], now, reason, result.get("http_status"))
        self._outputs.append((self.topics.ledger, ledger_key(event_id, sub), value, [], entry["source"][1]))
        # What the person's access report reads; a reference event was disclosed about no person.
        sent = entry.get("sent")
        if status == "delivered" and sent is not None and sent["person"] != REFERENCE_PERSON:
            key, disclosed = disclosure_record(event_id, sub, sent, now)
            self._outputs.append((self.topics.disclosures, key, disclosed, [], entry["source"][1]))

    def _dead_letter(self, key: str, sub: str, entry: dict, reason: str, result: dict) -> None:
        topic, partition, offset = entry["source"]
        message = f"after {entry['attempts']} attempts; last: {result.get('reason') or result.get('http_status')}"
        dead = DeadLetter(reason, message, "deliver", topic, partition, offset, sub, event_id=_event_id(entry, sub))
        original = [(k, v.encode()) for k, v in entry["headers"]]
        self._outputs.append(
            (self.topics.deadletter, key.encode(), self.seal.seal(entry["record"].encode()), dead.headers(original))
        )


def _entry(record: ConsumerRecord, idempotency_key: str, now: float) -> dict:
    """The pending entry of a delivery record (pending.py), with the headers worth keeping."""
    headers = [[k, v.decode()] for k, v in (record.headers or []) if k in KEPT_HEADERS]
    return pending.new_entry(
        idempotency_key, record.value.decode(), headers, [record.topic, record.partition, record.offset], now
    )


def _context(event_id: str, sub: str, entry: dict) -> dict:
    """Log context of a delivery: ids and where its record was read, and its trace id (no personal data)."""
    topic, partition, offset = entry["source"]
    trace = tracing.parse(dict(entry["headers"]).get(tracing.HEADER, ""))
    return {
        "event_id": event_id,
        "subscription": sub,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "trace_id": trace.trace_id if trace else None,
    }


def _event_id(entry: dict, sub: str) -> str:
    """The idempotency key is `<event id>.<subscription id>` (docs/architecture.md): no need to parse the record."""
    suffix = f".{sub}"
    if entry["key"].endswith(suffix):
        return entry["key"][: -len(suffix)]
    return orjson.loads(entry["record"])["event"]["id"]
