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
        self.states = [_Unrecoverable(topic, {})]
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
