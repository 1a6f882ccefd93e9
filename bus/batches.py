"""The batch service: how every stage of the worker (ingest, router, delivery) reads its topic.

Faust's stream path costs ~400 us per event here (docs/routing.md, Performance), so each stage's
topic is read with aiokafka's `getmany()` instead, by a `mode.Service` started with the worker,
in its own consumer group (`<app id>-ingest`, `<app id>-router`, `<app id>-delivery`). Per batch:

0. `before_batch(records)`, if given, is awaited (the router: its subscriptions are current);
   it runs while the batch before is handled (`_consume_checked`);
1. `logic.handle_batch(records, outputs)`, the records in offset order per partition, then
   `logic.end_batch()`; the batch's state writes (`take()` of each state) are set aside;
2. every output is added to a record batch per (topic, partition) (bus/record_batches.py),
   and the batches are handed to the producer in the background, after the previous batch's
   (the producer keeps one request in flight per partition: handing over waits for it);
3. in the background, while the next batches are fetched and handled: the outputs are
   awaited, then the state writes are sent the same way and awaited, then the input offsets
   are committed. Batches complete in order: a batch's state writes wait for the previous
   batch's, its commit for the previous commit. Up to `PIPELINE` batches are completing at
   once (a batch's acknowledgement, state writes and commit are three round trips to the
   broker; waiting for them one batch at a time left the worker idle a fifth of the time).

A worker killed at any point re-reads from its last commit: outputs may repeat (same content,
same idempotency key), nothing is lost, and no state describes an output that is not in Kafka.
Order: a partition's records are handled in order and the producer keeps one request in flight
per partition, so one person's outputs keep their order.

Observability, per batch (not per event, to keep the hot path cheap), through the `metrics` hook
the stage is given (`BatchMetrics`): `event_in` for the records handled, `event_out` per output
topic once the outputs are acknowledged.

A subclass may take records in and write in cycles of its own (the delivery stage applies
attempt outcomes as they come back): it overrides `on_batch` and runs `_process` with no new
records when it has something to write; `committable(done)` may commit less than the records
read, e.g. only below the oldest delivery still in flight.

Broker outages: a broker that is down or unreachable (aiokafka's connection, timeout and other
retriable errors, from a send, an acknowledgement, a commit or a fetch) does not end the stage. It
does what a restarted worker would do, in place: the cycles in flight are dropped, its partitions
and their state given up, and its clients closed; it waits for the broker with backoff (one log line
when the outage begins, one a minute while it lasts, one when the stage has its partitions again;
until then `outage` says so to /healthz and /readyz), then starts again from its last commit with
its state read anew from the changelogs. Outputs after the last commit may repeat; nothing is
lost or reordered, as after a kill -9. Any other error still ends the stage, and the worker exits
non-zero.

Rebalances: revoking waits for the batch in progress (it holds the lock), so a batch is never
committed by a worker that lost the partition. On assignment the state of partitions that
were not already held is recovered from the changelogs before any of their records is
handled; records fetched for a partition still recovering are sought back and read again.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Protocol

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
)
from mode import Service

from bus import clients
from bus.assignor import CoPartitioned
from bus.inspector import BrokerUnreachable, GroupsUndescribed, KafkaInspector
from bus.record_batches import RecordBatches
from bus.state import ChangelogState
from bus.topics import ensure_topics

log = structlog.get_logger(__name__)

# A record a stage writes: (topic, key, value, headers), or with a fifth element the partition
# (else the key's). (Not connectors.api.Output, where a source writes.)
Write = (
    tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]
    | tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]], int]
)


# Drawn once per process: two containers with the same host name and pid 1 are still told apart, and
# a named worker knows its own members from a namesake's (agents/worker_name.py).
_PROCESS_TOKEN = uuid.uuid4().hex[:4]


# Names this process among a group's members: host and pid to find it, its token, and in a worker of
# several processes its index i (it serves on SAMBAND_WEB_PORT + i; agents/processes.py sets the variable).
def process_client_id() -> str:
    return f"samband-{socket.gethostname()}-{os.getpid()}-{_PROCESS_TOKEN}" + _process_suffix()


def process_member_name(worker_name: str) -> str:
    """A named worker's static member id in each stage's group (KIP-345), one per process."""
    return worker_name + _process_suffix()


def _process_suffix() -> str:
    index = os.environ.get("SAMBAND_WORKER_PROCESS_INDEX")
    return f"-p{index}" if index else ""


PIPELINE = 8  # batches completing in the background at most; the next one waits for the oldest
OUTAGE_BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0)  # seconds between attempts to reach the broker again; the last repeats
OUTAGE_SUMMARY_EVERY = 60.0  # seconds between log lines while an outage lasts
RECOVERY_MAY_TAKE_MS = 3_600_000  # a stage's consumer stays in its group while its state is read this long


def stage_consumer_options(
    group: str, batch_size: int, session_timeout_ms: int, request_timeout_ms: int, member_name: str | None = None
) -> dict:
    """How a stage's consumer joins its group."""
    return {
        "group_id": group,
        "client_id": process_client_id(),  # names this process among the group's members (`samband status`)
        # A named worker is a static member: started again within the session timeout (after a kill,
        # or a broker outage ridden out), the coordinator gives it its assignment back without a
        # rebalance, so the other workers' partitions never stop. Unnamed, a new member each time.
        "group_instance_id": process_member_name(member_name) if member_name else None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": batch_size,
        "session_timeout_ms": session_timeout_ms,
        "heartbeat_interval_ms": min(3000, session_timeout_ms // 3),
        # A worker's partitions are the same in every stage. One assignor only: aiokafka (0.14) sends
        # a JoinGroup for each assignor it is given, the second with more protocols than the first,
        # and the coordinator takes that as a member changing its metadata mid-rebalance and starts
        # another; with three workers on a three-broker cluster the router and delivery groups
        # rebalanced about four times a second for minutes (docs/reliability.md).
        "partition_assignment_strategy": (CoPartitioned,),
        # A revocation may wait for a write (request timeout) and, in delivery, for attempts on
        # their way (30 s): the group waits that long for this member to rejoin, not only a session.
        "rebalance_timeout_ms": max(session_timeout_ms, request_timeout_ms + 40_000),
        # A partition's state is recovered inside the assignment, and aiokafka counts that time as the
        # consumer's idle time: past max_poll_interval_ms it leaves the group. At national scale a
        # recovery read whole takes minutes (docs/state.md, 215 s on a quiet machine, more beside
        # other load), and with aiokafka's 5 minutes a worker was seen evicted mid-recovery, then
        # recovering again from nothing, over and over. The session timeout still finds a dead worker.
        "max_poll_interval_ms": RECOVERY_MAY_TAKE_MS,
    }


class NameTaken(Exception):
    """Another live worker process holds this one's name (SAMBAND_WORKER_NAME): this one stops."""


def broker_unavailable(exc: BaseException) -> bool:
    """An error of a broker that is down, unreachable or electing a leader: one a stage rides out."""
    return isinstance(exc, (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError)) or (
        isinstance(exc, KafkaError) and exc.retriable
    )


@dataclass
class Outage:
    since: float  # time.time() when the stage lost the broker
    error: str  # the error's type name (never its text: it may hold a record)


@dataclass
class Cycle:
    """A handled batch whose outputs are sent: what completing it takes."""

    records: int
    outputs: Counter
    sent: asyncio.Task  # the outputs handed to the producer: their futures, resolved when acknowledged
    state_writes: list[tuple[ChangelogState, list]]
    done: dict[TopicPartition, int]
    state_written: asyncio.Future  # resolved once its state writes are acknowledged


class BatchMetrics(Protocol):
    """What a stage reports per batch (agents/metrics.py is one)."""

    def event_in(self, topic: str, count: int) -> None: ...

    def event_out(self, topic: str, count: int) -> None: ...


class _NoMetrics:
    def event_in(self, topic: str, count: int) -> None:
        pass

    def event_out(self, topic: str, count: int) -> None:
        pass


class BatchLogic(Protocol):
    states: list[ChangelogState]

    def handle_batch(self, records: list[ConsumerRecord], outputs: list[Write]) -> None:
        """Append the outputs of `records` (in offset order per partition) and set the state they imply."""

    def end_batch(self) -> None:
        """After the batch is handled, before its state writes are taken."""

    def due(self) -> bool:
        """Whether a batch with no records should be handled now (work kept in state fell due)."""

    def recovered(self, partitions: set[int]) -> None:
        """The state of `partitions` was just read from the changelogs."""


class BatchService(Service):
    def __init__(
        self,
        *,
        bootstrap: str,
        source: str,
        group: str,
        outputs: list[str],
        partitions: int,
        batch_size: int,
        within: float,
        session_timeout: float,
        logic: Callable[[], BatchLogic],
        request_timeout: float = 40.0,
        member_name: str | None = None,
        ready: Callable[[], Awaitable[object]] | None = None,
        before_batch: Callable[[dict[TopicPartition, list[ConsumerRecord]]], Awaitable[object]] | None = None,
        metrics: BatchMetrics | None = None,
        topic_configs: Mapping[str, dict[str, str]] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.metrics = metrics or _NoMetrics()
        self.topic_configs = dict(topic_configs or {})  # of the source and outputs (bus/topics.py TABLE)
        self.bootstrap, self.source, self.group = bootstrap, source, group
        self.outputs, self.partition_count, self.batch_size = outputs, partitions, batch_size
        self.within_ms = int(within * 1000)  # the longest getmany() waits when nothing has arrived
        self.session_timeout_ms = int(session_timeout * 1000)
        self.request_timeout_ms = int(request_timeout * 1000)  # a write waits this long for the broker
        self.member_name = member_name  # SAMBAND_WORKER_NAME: a static member of the group when set
        self._name_given_up = False  # a namesake holds it: the stage stops (NameTaken)
        self.make_logic, self.ready, self.before_batch = logic, ready, before_batch
        # Made at the start (on_start, _consume_from_commit); the consumer is None again while
        # the broker is lost.
        self.logic: BatchLogic = None  # type: ignore[assignment]
        self.consumer: AIOKafkaConsumer = None
        self.producer: AIOKafkaProducer = None
        self.writes: RecordBatches = None  # type: ignore[assignment]
        self.held: set[int] = set()  # partitions whose state is recovered and current
        self._revoked: set[int] = set()
        self._revoked_generation = -1  # the group generation whose assignment was revoked last
        self._lock = asyncio.Lock()
        self._finished = asyncio.Event()
        self._consuming = False  # the consuming task has begun: a stop waits for it to finish
        self._completing: deque[tuple[Cycle, asyncio.Task]] = deque()  # oldest first
        self._sending: asyncio.Task | None = None  # the latest batch's outputs being handed to the producer
        self.outage: Outage | None = None  # the broker is unavailable and the stage waits for it

    async def on_start(self) -> None:
        self.logic = self.make_logic()
        await self._ensure_topics()
        await self._start_producer()

    async def _ensure_topics(self) -> None:
        wanted = {name: self.topic_configs.get(name, {}) for name in [self.source, *self.outputs]}
        wanted |= {s.topic: s.topic_configs for s in self.logic.states}
        await ensure_topics(self.bootstrap, wanted, self.partition_count, check=True)

    async def _start_producer(self) -> None:
        self.producer = clients.producer(
            self.bootstrap,
            acks="all",
            linger_ms=5,
            max_batch_size=512 * 1024,
            request_timeout_ms=self.request_timeout_ms,
        )
        await self.producer.start()
        self.writes = RecordBatches(self.producer)
        await self.writes.load([*self.outputs, *(s.topic for s in self.logic.states)])

    @Service.task
    async def _consume(self) -> None:
        self._consuming = True
        try:
            if self.ready is not None and (await self.wait(self.ready())).stopped:
                return
            while not self.should_stop:
                try:
                    await self._consume_from_commit()
                except Exception as exc:
                    if self.should_stop or not broker_unavailable(exc):
                        raise
                    await self._ride_out(exc)
        finally:
            self._finished.set()

    async def _consume_from_commit(self) -> None:
        """Join the group and handle batches until stopped (or until the broker is lost)."""
        self.consumer = clients.consumer(
            self.bootstrap, **stage_consumer_options(self.group, self.batch_size, self.session_timeout_ms,
                                                     self.request_timeout_ms, self.member_name)
        )  # fmt: skip
        self._rebalances = Rebalances(self)
        self.consumer.subscribe([self.source], listener=self._rebalances)
        await self.consumer.start()
        if self.before_batch is None:
            while not self.should_stop:
                await self.on_batch(await self._fetch(self.within_ms))
        else:
            await self._consume_checked()

    async def _fetch(self, timeout_ms: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        """The next records; a rebalance that failed (its state could not be recovered) is raised here."""
        batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=self.batch_size)
        self._rebalances.raise_failure()
        return batch

    async def _ride_out(self, exc: BaseException) -> None:
        """The broker is gone: give up what is in flight, wait for the broker, start again from the commit."""
        self.outage = Outage(time.time(), type(exc).__name__)
        log.warning("stage.broker_unavailable", group=self.group, error=self.outage.error)
        await self._abandon()
        attempt, summarised = 0, time.monotonic()
        while not self.should_stop:
            await self.sleep(OUTAGE_BACKOFF[min(attempt, len(OUTAGE_BACKOFF) - 1)])  # returns at once on stop
            attempt += 1
            try:
                # A topic deleted meanwhile (unknown topic is "retriable" too) is made again, as at the start.
                await self._ensure_topics()
                await self._start_producer()
                break
            except Exception as retry:
                if not broker_unavailable(retry):
                    raise
                await _closed(self.producer.stop())
            if time.monotonic() - summarised >= OUTAGE_SUMMARY_EVERY:
                summarised = time.monotonic()
                log.warning(
                    "stage.broker_still_unavailable", group=self.group, seconds=round(time.time() - self.outage.since)
                )

    async def _abandon(self) -> None:
        """What a kill -9 would lose, given up in place: the cycles in flight (not committed, so read
        again), the partitions and their state (recovered again on the next assignment), the clients."""
        in_flight = [task for _, task in self._completing] + ([self._sending] if self._sending else [])
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
        for cycle, _ in self._completing:
            cycle.state_written.cancel()
        self._completing.clear()
        self._sending = None
        consumer, self.consumer = self.consumer, None
        partitions = {tp.partition for tp in consumer.assignment()} if consumer is not None else set()
        if consumer is not None:
            await _closed(consumer.stop())
        self.partitions_lost(partitions | self.held)
        # Until every batch it holds is sent or expired (a request timeout): none of them may go out
        # later, after what the stage writes again from its commit.
        await _closed(self.producer.stop(), self.request_timeout_ms / 1000 + 5)

    def partitions_lost(self, partitions: set[int]) -> None:
        """Give up every partition without completing anything: all state is read anew when assigned
        again (`partitions`, those the stage had, are for what a subclass keeps per partition)."""
        self.held, self._revoked = set(), set()
        for state in self.logic.states:
            state.drop(set(state.partitions))
            state.abandoned()

    async def _consume_checked(self) -> None:
        """Each batch's `before_batch()` runs while the batch before it is handled: the next batch
        is taken from the fetched records (no wait) as soon as the previous one's check is done,
        so the check's round trip to the broker overlaps the handling instead of preceding it."""
        checked: tuple[dict, asyncio.Future] | None = None  # fetched, its before_batch() running
        before_batch = self.before_batch
        assert before_batch is not None  # (only called with one)
        try:
            while not self.should_stop:
                batch = await self._fetch(0 if checked else self.within_ms)
                fresh = (batch, asyncio.ensure_future(before_batch(batch))) if batch else None
                if checked is not None:
                    await checked[1]
                    await self.on_batch(checked[0])
                elif fresh is None:
                    await self.on_batch({})
                checked = fresh
        finally:
            if checked is not None:  # fetched, not handled: not committed either, read again after a restart
                checked[1].cancel()

    async def on_batch(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Handle the batch and send its outputs, then let its acknowledgement, state writes and
        commit complete in the background while the next batches are fetched and handled. An
        empty batch is handled too when the logic has work that is due (`due()`)."""
        if batch or (self.logic is not None and self.logic.due()):
            async with self._lock:
                cycle = await self._submit(batch)
                previous = self._completing[-1] if self._completing else None
                self._completing.append((cycle, asyncio.create_task(self._complete(cycle, previous))))
                if len(self._completing) > PIPELINE:
                    await self._completing.popleft()[1]
        while self._completing and self._completing[0][1].done():
            await self._completing.popleft()[1]  # a failed write stops the consumer, as a failed batch would

    async def _completed(self) -> None:
        """Wait for every cycle completing in the background."""
        while self._completing:
            await self._completing.popleft()[1]

    def held_records(
        self, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> tuple[list[ConsumerRecord], dict[TopicPartition, int]]:
        """The records of partitions whose state is current, and the next offset of each; the
        records of a partition still recovering are sought back, to be read again."""
        held: list[ConsumerRecord] = []
        done: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            if tp.partition not in self.held:  # still recovering, or no longer ours
                if tp in self.consumer.assignment():
                    self.consumer.seek(tp, records[0].offset)
                continue
            held += records
            done[tp] = records[-1].offset + 1
        return held, done

    async def on_stop(self) -> None:
        if self._consuming:  # (a stop during the start comes before the consuming task ever ran)
            await self._finished.wait()  # the batch in progress completes and commits
        async with self._lock:
            await self._completed()
        checkpoints: dict[str, dict[int, int]] = {}
        try:
            checkpoints = await self._changelog_ends()
            if self.consumer is not None:
                leave_on_stop(self.consumer)
                await self.consumer.stop()
            if self.producer is not None:
                await self.producer.stop()
        finally:
            if self.logic is not None:
                for state in self.logic.states:
                    # On disk: files removed, or kept with a checkpoint of the partitions it reflects exactly.
                    state.close(checkpoints.get(state.topic))

    async def _changelog_ends(self) -> dict[str, dict[int, int]]:
        """Changelog topic -> partition -> its end offset now, for the on-disk states, asked after
        every cycle has completed and before the consumer leaves the group. A state keeps a
        checkpoint only of the partitions it reflects exactly up to there (`ChangelogState.checkpoint`).
        Empty if the broker does not answer: the files are then removed, and the next worker reads
        the changelogs whole."""
        tps = [
            TopicPartition(state.topic, p)
            for state in (self.logic.states if self.logic is not None and self.consumer is not None else [])
            if state.disk is not None
            for p in state.reflects
        ]
        if not tps:
            return {}
        try:
            async with asyncio.timeout(10):
                ends = await self.consumer.end_offsets(tps)
            for state in self.logic.states:  # (tps non-empty: a logic and a consumer)
                await state.learn_topic_id(self.bootstrap)
        except (KafkaError, TimeoutError) as exc:
            log.warning("stage.checkpoint_not_taken", group=self.group, error=type(exc).__name__)
            return {}
        found: dict[str, dict[int, int]] = {}
        for tp, offset in ends.items():
            found.setdefault(tp.topic, {})[tp.partition] = offset
        return found

    async def _process(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """One cycle, complete before it returns: handled, written, state written, committed."""
        await self._completed()
        await self._complete(await self._submit(batch), None)

    async def _submit(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> Cycle:
        """Handle the batch and send its outputs; its state writes are taken, not yet sent."""
        outputs: list[Write] = []
        held, done = self.held_records(batch)
        self.logic.handle_batch(held, outputs)
        self.logic.end_batch()
        add = self.writes.add
        for output in outputs:
            add(*output)
        # Handed to the producer in the background, in order, so the next batch is handled while
        # the producer waits for a partition's previous request (it keeps one in flight per partition).
        self._sending = asyncio.create_task(self._send_after(self._sending, self.writes.take()))
        return Cycle(
            len(held),
            Counter(map(itemgetter(0), outputs)),
            self._sending,
            [(state, state.take()) for state in self.logic.states],
            done,
            asyncio.get_running_loop().create_future(),
        )

    async def _complete(self, cycle: Cycle, previous: tuple[Cycle, asyncio.Task] | None) -> None:
        """Once the outputs are acknowledged and the previous cycle's state is written: the state
        writes; once those are acknowledged and the previous cycle committed: the commit."""
        try:
            await asyncio.gather(*await cycle.sent)
            if previous is not None:
                await previous[0].state_written
            if cycle.records:
                self.metrics.event_in(self.source, cycle.records)
            for topic, count in cycle.outputs.items():
                self.metrics.event_out(topic, count)
            for state, pending in cycle.state_writes:
                state.write(pending, self.writes)
            await asyncio.gather(*await self.writes.send())
            for state, pending in cycle.state_writes:
                state.acknowledged(pending)
            cycle.state_written.set_result(None)
        except BaseException as exc:  # the later cycles fail too: no state is written out of order
            if isinstance(exc, asyncio.CancelledError):
                cycle.state_written.cancel()
            else:
                cycle.state_written.set_exception(exc)
                cycle.state_written.exception()  # marked retrieved: the failure is raised by this task
            raise
        if previous is not None:
            await previous[1]
        commit = self.committable(cycle.done)
        if commit:
            try:
                await self.consumer.commit(commit)
            except CommitFailedError:  # the group moved on: the new owner re-reads the batch
                log.warning("batch_commit_failed", group=self.group)

    async def _send_after(self, previous: asyncio.Task | None, batches: list) -> list[asyncio.Future]:
        if previous is not None:
            await previous  # a failed send fails the later ones: nothing goes out of order
        return await self.writes.submit(batches)

    def committable(self, done: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """The offsets to commit after a cycle, given the next offset of each partition just handled."""
        return done

    @property
    def finished(self) -> bool:
        """Its consuming task has ended: stopped, or died (which makes the worker exit non-zero)."""
        return self._finished.is_set()

    def assigned(self) -> set[TopicPartition] | None:
        """This consumer's partitions of its source topic; None until its consumer has started."""
        return None if self.consumer is None else set(self.consumer.assignment())

    @property
    def recovering(self) -> bool:
        """Some assigned partition's state is still being read from its changelog."""
        assigned = self.assigned() or set()
        return any(tp.partition not in self.held for tp in assigned)

    def _generation(self) -> int:
        """The consumer's group generation; -1 when it has none (never joined, or evicted)."""
        return getattr(getattr(self.consumer, "_coordinator", None), "generation", -1)

    def _heartbeat_while_recovering(self) -> None:
        """aiokafka starts a member's heartbeats only once the assignment callback has returned, and
        the state is recovered inside it: a recovery longer than the session timeout (minutes at
        national scale, against 60 s) had the member removed from the group, its commits refused,
        and the state read again from nothing at the next join, over and over. Heartbeats from the
        start of the callback keep it in the group (its generation and member id are set by then)."""
        start = getattr(getattr(self.consumer, "_coordinator", None), "_start_heartbeat_task", None)
        if start is not None:
            start()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:  # waits for the batch in progress
            await self._completed()
            self._revoked = {tp.partition for tp in revoked}
            self._revoked_generation = self._generation()
            self.held = set()
        if revoked and self.member_name and self._generation() == -1:  # membership lost, not a rebalance
            await self._refuse_to_displace_a_namesake()

    async def _refuse_to_displace_a_namesake(self) -> None:
        """A static member that lost its membership joins again next, under its name, and would take it
        from whoever holds it now. If that is another process, a namesake took this one's place:
        the two would take it from each other over and over, both handling the same partitions.
        This one joins again without the name instead (it takes nothing from the namesake) and its
        stage stops with NameTaken: the worker exits non-zero."""
        name = process_member_name(self.member_name or "")
        try:
            async with KafkaInspector(self.bootstrap, timeout=5.0) as kafka:
                members = await kafka.group_members([self.group])
        except (BrokerUnreachable, GroupsUndescribed):  # cannot tell (the broker gone: an outage is ridden out)
            return
        holders = {member.client_id for member in members if member.instance == name} - {process_client_id()}
        if holders:
            self._name_given_up = True
            self.consumer._coordinator._group_instance_id = None
            holder = min(holders)
            log.error("stage.worker_name_taken", group=self.group, member=name, holder=holder)
            raise NameTaken(
                f"another worker process ({holder}) took this one's name {name!r} in {self.group}, "
                "and this one stops: give each worker a name of its own (SAMBAND_WORKER_NAME)"
            )

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._name_given_up:
            return  # to a namesake (above): the stage stops, and recovers nothing meanwhile
        self._heartbeat_while_recovering()
        async with self._lock:
            # A cycle that ran since the revocation (work fallen due, `due()`) may have written state of
            # partitions revoked: written and acknowledged before they are read again, so the read has it.
            await self._completed()
            partitions = {tp.partition for tp in assigned}
            # A partition's state is kept only across the one rebalance that revoked it: nobody else
            # owned it in between. A worker evicted from the group (its generation reset), or coming
            # back after generations without it, may have missed another owner's writes (a new
            # protection grade): it reads the state again.
            follows = self._revoked_generation > 0 and self._generation() == self._revoked_generation + 1
            kept = partitions & self._revoked if follows else set()
            for state in self.logic.states:
                state.drop(set(state.partitions) - kept)
                await state.recover(self.bootstrap, partitions - kept)
            self.logic.recovered(partitions - kept)
            self.held = partitions
            log.info(
                "batch_partitions_assigned",
                group=self.group,
                partitions=sorted(partitions),
                recovered=sorted(partitions - kept),
            )
        if self.outage is not None:  # back in the group, its state recovered: the stage works again
            log.info(
                "stage.broker_back", group=self.group, unavailable_seconds=round(time.time() - self.outage.since, 1)
            )
            self.outage = None


class Rebalances(ConsumerRebalanceListener):
    """Hands the consumer's rebalances to the stage. aiokafka only logs an exception raised in a
    listener and goes on, so a stage whose state could not be recovered would hold partitions it
    never handles, and look alive: the failure is kept and raised by the consume loop instead
    (ridden out as an outage when the broker is at fault, else the stage stops and the worker exits)."""

    def __init__(self, stage: BatchService):
        self.stage = stage
        self.failure: Exception | None = None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            await self.stage.on_partitions_revoked(revoked)
        except Exception as exc:
            self.failure = self.failure or exc

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            await self.stage.on_partitions_assigned(assigned)
        except Exception as exc:
            self.failure = self.failure or exc

    def raise_failure(self) -> None:
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure


def leave_on_stop(consumer: AIOKafkaConsumer) -> None:
    """Make the consumer's stop leave its group, a static member's too, so a stopped worker's
    partitions are handed over at once. aiokafka sends no LeaveGroup for a static member (for it
    to come back, as after a kill, without a rebalance); without its instance id it sends one by
    member id, which the coordinator takes from a static member as well (Kafka's GroupCoordinator:
    the member and its static id are removed)."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None or not hasattr(coordinator, "_group_instance_id"):
        if getattr(consumer, "_group_instance_id", None) is not None:  # (an aiokafka other than 0.14)
            log.warning("stage.cannot_leave_group_on_stop", reason="aiokafka's coordinator has changed")
        return
    coordinator._group_instance_id = None


async def _closed(closing: Awaitable[object], timeout: float = 10.0) -> None:
    """Close a client of a broker that may be gone: bounded, and its errors are the outage's, already logged."""
    try:
        await asyncio.wait_for(closing, timeout)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the stage itself is being stopped
        # else: aiokafka's close cancels tasks of its own and may let their cancellation out
    except Exception:
        pass
