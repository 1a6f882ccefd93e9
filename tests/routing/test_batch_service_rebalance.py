"""A stage whose state cannot be recovered on assignment stops, instead of holding partitions it never handles (real broker).

aiokafka calls the rebalance listener and only logs what it raises. Before, a stage whose
changelog recovery failed kept its partitions unrecovered: every batch was sought back, nothing
was handled, and the worker looked alive. Now the consume loop raises the failure: the stage
crashes (the worker exits non-zero), or rides it out when the broker is at fault.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from support import unique_name

from bus.batches import BatchService
from bus.state import PartitionedState


class _Unrecoverable(PartitionedState):
    async def recover(self, bootstrap: str, partitions: set[int]) -> None:
        if partitions:
            raise RuntimeError("the changelog could not be read")


class _Logic:
    def __init__(self, topic: str):
        self.states: list[PartitionedState] = [_Unrecoverable(topic, {})]
        self.handled = 0

    def handle_batch(self, records, outputs) -> None:
        self.handled += len(records)

    def end_batch(self) -> None:
        pass

    def due(self) -> bool:
        return False

    def recovered(self, partitions: set[int]) -> None:
        pass


async def test_a_failed_state_recovery_on_assignment_stops_the_stage(kafka_bootstrap, new_topic):
    source = await new_topic(partitions=1, prefix="batch-source")
    logic = _Logic(unique_name("batch-state"))
    stage = BatchService(
        bootstrap=kafka_bootstrap,
        source=source,
        group=unique_name("batch-group"),
        outputs=[],
        partitions=1,
        batch_size=10,
        within=0.05,
        session_timeout=10,
        logic=lambda: logic,
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    await producer.send_and_wait(source, b"record", key=b"k")
    await producer.stop()
    await stage.start()
    try:
        async with asyncio.timeout(60):
            while not stage.crashed:
                await asyncio.sleep(0.1)  # poll interval inside the timeout
    except TimeoutError:
        raise AssertionError(f"the stage did not stop; records handled: {logic.handled}") from None
    finally:
        await stage.stop()
    assert isinstance(stage.crash_reason, RuntimeError) and logic.handled == 0


class _SlowToRecover(PartitionedState):
    """A recovery that takes longer than the session timeout, as one of a national state does."""

    def __init__(self, topic: str, takes: float):
        super().__init__(topic, {})
        self.takes, self.recoveries = takes, 0

    async def recover(self, bootstrap: str, partitions: set[int]) -> None:
        self.recoveries += 1
        await asyncio.sleep(self.takes)  # the time a long read takes (not a wait for a condition)
        await super().recover(bootstrap, partitions)


async def test_a_recovery_longer_than_the_session_timeout_keeps_the_stage_in_its_group(kafka_bootstrap, new_topic):
    """Found in the national state bench: heartbeats began only after the assignment callback, where
    the state is recovered, so the broker removed the member after the session timeout; its commits
    were refused and it recovered again from nothing at the next join, over and over."""
    from aiokafka.admin import AIOKafkaAdminClient

    source = await new_topic(partitions=1, prefix="batch-source")
    group = unique_name("batch-group")
    logic = _Logic(unique_name("batch-state"))
    slow = logic.states[0] = _SlowToRecover(logic.states[0].topic, takes=10.0)
    stage = BatchService(
        bootstrap=kafka_bootstrap, source=source, group=group, outputs=[], partitions=1, batch_size=10,
        within=0.05, session_timeout=6, logic=lambda: logic,
    )  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    await producer.send_and_wait(source, b"record", key=b"k")
    await producer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await stage.start()
    try:
        async with asyncio.timeout(60):
            while not any(m.offset == 1 for m in (await admin.list_consumer_group_offsets(group)).values()):
                assert not stage.crashed, stage.crash_reason
                await asyncio.sleep(0.2)  # poll interval inside the timeout
    except TimeoutError:
        raise AssertionError(f"never committed; recoveries: {slow.recoveries}") from None
    finally:
        await stage.stop()
        await admin.close()
    assert slow.recoveries == 1 and logic.handled == 1
