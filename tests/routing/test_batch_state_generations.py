"""A batch stage keeps a partition's state across a rebalance only when nobody else can have owned
the partition in between (hostile review: a worker evicted from the group, e.g. after a long
pause, kept its state when it came back, though another worker had routed the partition's events
meanwhile: a person's new protection grade could be missed). No broker: the rebalance callbacks."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka import TopicPartition

from bus.batches import BatchService
from bus.state import PartitionedState


class _RecordingState(PartitionedState):
    def __init__(self):
        super().__init__("state-topic", {})
        self.recovered_partitions: list[set[int]] = []

    async def recover(self, bootstrap: str, partitions: set[int]) -> None:
        self.recovered_partitions.append(set(partitions))
        for partition in partitions:
            self.partitions[partition] = {}


class _Logic:
    def __init__(self):
        self.states = [_RecordingState()]

    def recovered(self, partitions: set[int]) -> None:
        pass


def _stage() -> tuple[BatchService, _RecordingState, SimpleNamespace]:
    stage = BatchService(bootstrap="unused:9092", source="source", group="group", outputs=[], partitions=4,
                         batch_size=10, within=0.05, session_timeout=10, logic=_Logic)  # fmt: skip
    stage.logic = stage.make_logic()
    coordinator = SimpleNamespace(generation=-1)
    stage.consumer = SimpleNamespace(_coordinator=coordinator)
    return stage, stage.logic.states[0], coordinator


async def _rebalance(stage: BatchService, coordinator, revoked: set[int], assigned: set[int], generation: int):
    await stage.on_partitions_revoked({TopicPartition("source", p) for p in revoked})
    coordinator.generation = generation  # the JoinGroup answer, before the assignment is handed over
    await stage.on_partitions_assigned({TopicPartition("source", p) for p in assigned})


async def test_state_is_kept_across_one_rebalance_and_read_again_after_missed_generations():
    stage, state, coordinator = _stage()
    await _rebalance(stage, coordinator, set(), {0, 1}, generation=1)
    assert state.recovered_partitions == [{0, 1}]

    await _rebalance(stage, coordinator, {0, 1}, {0, 1, 2}, generation=2)  # one rebalance it took part in
    assert state.recovered_partitions[-1] == {2}

    # Evicted: the group went on without it (generation 3 gave its partitions to another worker),
    # and it comes back in generation 4 with the same partitions.
    await _rebalance(stage, coordinator, {0, 1, 2}, {0, 1, 2}, generation=4)
    assert state.recovered_partitions[-1] == {0, 1, 2}


async def test_state_is_read_again_after_the_consumer_lost_its_generation():
    stage, state, coordinator = _stage()
    await _rebalance(stage, coordinator, set(), {0}, generation=5)
    coordinator.generation = -1  # aiokafka's reset_generation: the coordinator no longer knew the member
    await stage.on_partitions_revoked({TopicPartition("source", 0)})
    coordinator.generation = 6
    await stage.on_partitions_assigned({TopicPartition("source", 0)})
    assert state.recovered_partitions[-1] == {0}


async def test_a_cycle_run_since_the_revocation_completes_before_the_partitions_are_read_again():
    """Found by review: a cycle of work fallen due (life stages, a backfill chunk) ran between a
    revocation and the next assignment and wrote state of a revoked partition; the assignment read
    the partition again without waiting for it, so the cycle's changelog record landed after the
    read's end and its state was missing (and counted as reflected, for a checkpoint)."""
    stage, state, coordinator = _stage()
    await _rebalance(stage, coordinator, set(), {0}, generation=1)
    await stage.on_partitions_revoked({TopicPartition("source", 0)})
    written = asyncio.Event()

    async def cycle_completing() -> None:  # its state written and acknowledged
        written.set()

    stage._completing.append((None, asyncio.create_task(cycle_completing())))  # type: ignore[arg-type]
    seen_at_recovery: list[bool] = []
    recover = state.recover

    async def recover_noting(bootstrap: str, partitions: set[int]) -> None:
        seen_at_recovery.append(written.is_set())
        await recover(bootstrap, partitions)

    state.recover = recover_noting  # type: ignore[method-assign]
    coordinator.generation = 3  # not the one right after: read again
    await stage.on_partitions_assigned({TopicPartition("source", 0)})
    assert seen_at_recovery == [True]
