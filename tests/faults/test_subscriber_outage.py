"""A subscriber refused for minutes, then answering 500, then up: it gets everything, in order (issue 14).

The issue's scenario: connections to the subscriber are refused for 3 minutes, then it answers
500 for a minute, then it is up again. The retries run on the subscription's schedule until the
circuit breaker opens; then one probe goes out per interval, and the first probe that is
delivered lets every waiting head go. Nothing may be lost, and each person's events arrive in
order. `make faults` runs it at full length with the default schedule and breaker
(SAMBAND_FAULT_SUBSCRIBER_REFUSED_SECONDS=180, SAMBAND_FAULT_SUBSCRIBER_500_SECONDS=60);
`make test` runs 5 s of each with a short schedule and a probe every second.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from delivery_bus import DeliveryBus
from fault_counts import count, subject_and_seq
from webhook_receiver import Receiver, Reply

REFUSED_S = float(os.environ.get("SAMBAND_FAULT_SUBSCRIBER_REFUSED_SECONDS", "5"))
ERRORS_S = float(os.environ.get("SAMBAND_FAULT_SUBSCRIBER_500_SECONDS", "5"))
FULL = REFUSED_S >= 60  # the defaults of a real subscription, as in production
PROBE_S = 30.0 if FULL else 1.0  # the breaker's probe interval (SAMBAND_BREAKER_PROBE_SECONDS; 30 by default)
PERSONS, PER_PERSON = 20, 5


@pytest.mark.timeout(420 + REFUSED_S + ERRORS_S)
async def test_a_subscriber_refused_then_answering_500_then_up_gets_everything_in_order(
    kafka_bootstrap, worker_env, tmp_path
):
    env = (
        {**worker_env}
        if FULL
        else {**worker_env, "SAMBAND_BREAKER_FAILURES": "5", "SAMBAND_BREAKER_PROBE_SECONDS": "1"}
    )
    bus = DeliveryBus(kafka_bootstrap, env, tmp_path / "worker.log")
    failing = [False]
    receiver = Receiver(bus.secret, lambda _n, _e: Reply(500) if failing[0] else Reply(200))
    url = await receiver.start()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    await bus.start()
    total = PERSONS * PER_PERSON
    sent = bus.events_for("outage", PERSONS, PER_PERSON)
    try:
        schedule = {} if FULL else {"retry_schedule": [0.5, 1, 2, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]}
        await bus.subscribe("outage", url, connect_timeout=1, read_timeout=2, **schedule)
        await bus.wait_for(receiver, receiver.verified, 60, "the subscriber verified")
        answered = len(receiver.delivered)  # the handshake
        await receiver.stop()  # connections are refused from now on
        loop = asyncio.get_running_loop()
        down_since = loop.time()
        await bus.send(sent)
        await asyncio.sleep(REFUSED_S - (loop.time() - down_since))  # the fault's length, not a wait for an outcome
        failing[0] = True
        requests_before = len(receiver.received)
        await receiver.start(port)  # back on its address, answering 500 to everything
        await asyncio.sleep(ERRORS_S)  # the fault's length
        assert len(receiver.delivered) == answered  # nothing got through the outage
        # The breaker opened during the refusals: the 500s met probes, one per interval, not 100 persons' retries.
        assert "delivery.subscription_suspended" in bus.worker.log_path.read_text()
        probes = len(receiver.received) - requests_before
        assert 1 <= probes <= ERRORS_S / PROBE_S + 3, f"{probes} requests in {ERRORS_S:.0f} s of 500s"
        failing[0] = False
        await bus.wait_for(receiver, lambda: len(receiver.unique_ids) >= total, 300, "every event after the outage")
    finally:
        await bus.stop()
        await receiver.stop()
    counts = count(
        f"a subscriber refused {REFUSED_S:.0f} s, then 500 for {ERRORS_S:.0f} s, then up",
        {"outage": {r["idempotency_key"] for r in sent}},
        {"outage": receiver.events()},
        subject_and_seq,
    ).report()
    assert (counts.lost, counts.wrong, counts.out_of_order) == (0, 0, 0), counts
