"""A worker told to stop stops within its stop timeout, even when Kafka stops answering (issue 14).

A stop waits for the batch in progress: its outputs acknowledged, its state written, its offsets
committed. When the broker (or the group) never answers, that wait had no end: a worker that an
orchestrator asked to stop ran on until it was killed (over 90 s here). Now, after
`SAMBAND_STOP_TIMEOUT_SECONDS`, the worker exits as a kill -9 would, with exit code 3: what it
had not committed is read again. The test freezes a broker of its own (SIGSTOP: it keeps its
connections and answers nothing, as a hung or cut-off broker would) while deliveries flow, asks
the worker to stop, lets the broker go on, and starts the worker again: everything arrives, in
order per person.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from delivery_bus import assert_in_order_per_person, running_bus
from own_broker import needs_own_broker, own_broker
from webhook_receiver import VALIDATION_TYPE, Receiver, Reply

from agents.commands.worker import STOP_TIMED_OUT
from deploy import launcher

pytestmark = [pytest.mark.kafka, needs_own_broker]

PERSONS, PER_PERSON = 8, 40
STOP_TIMEOUT = 5.0


@pytest.mark.timeout(300)
async def test_a_worker_asked_to_stop_while_the_broker_hangs_exits_in_time_and_loses_nothing(tmp_path):
    async with own_broker(tmp_path) as broker:
        async with running_bus(
            broker.bootstrap_servers,
            tmp_path,
            SAMBAND_STOP_TIMEOUT_SECONDS=str(STOP_TIMEOUT),
            # The worker that gave up never left its groups: the group waits this long for it.
            SAMBAND_BROKER_SESSION_TIMEOUT="6",
        ) as bus:
            # Slow enough that deliveries, their ledger writes and commits are under way when the broker hangs.
            receiver = Receiver(
                bus.secret, lambda _n, e: Reply(delay=0.05) if e["type"] != VALIDATION_TYPE else Reply()
            )
            await receiver.start()
            try:
                await bus.subscribe("hang", receiver.url, max_concurrency=1)
                await bus.wait_for(receiver, receiver.verified, 60, "verified")
                await bus.send(bus.events_for("hang", PERSONS, PER_PERSON))
                await bus.wait_for(receiver, lambda: len(receiver.events()) >= 20, 60, "the first deliveries")

                pid = launcher.status(broker).pid
                assert pid is not None
                os.kill(pid, signal.SIGSTOP)
                try:
                    asked = time.monotonic()
                    # (WorkerProcess.stop fails the test if the worker has not exited within 90 s.)
                    returncode = bus.worker.stop(signal.SIGTERM, timeout=90)
                    took = time.monotonic() - asked
                finally:
                    os.kill(pid, signal.SIGCONT)
                assert took < STOP_TIMEOUT + 5, f"stopped after {took:.1f} s:\n{bus.worker.log_tail()}"
                assert returncode == STOP_TIMED_OUT, bus.worker.log_tail()
                assert "worker.stop_timed_out" in bus.worker.log_path.read_text()

                bus.worker.start()  # the same group: it reads again from the last commit
                await bus.wait_for(
                    receiver, lambda: len(receiver.unique_ids) >= PERSONS * PER_PERSON, 120, "every event"
                )
            finally:
                await receiver.stop()
            assert_in_order_per_person(receiver.events(), PERSONS, PER_PERSON, first_arrivals=True)
