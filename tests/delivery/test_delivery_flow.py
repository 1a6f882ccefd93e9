"""The delivery agent in a real worker against real receivers: handshake, order, outcomes, pause.

One worker serves every test in this module (each test uses its own subscriptions),
which keeps the module to one worker start-up.
"""

from __future__ import annotations

import json

import pytest
from delivery_bus import assert_in_order_per_person, running_bus
from support import open_dead_letter
from webhook_receiver import Receiver, Reply

from agents.delivery.ledger import ledger_for_event
from bus.reading import read_topic
from connectors.dead_letters import DeadLetter

FAST = {"retry_schedule": [0.1, 0.2, 0.3, 0.3, 0.3], "read_timeout": 1.0, "connect_timeout": 0.5}


@pytest.fixture(scope="module")
async def bus(kafka_bootstrap, tmp_path_factory):
    async with running_bus(kafka_bootstrap, tmp_path_factory.mktemp("delivery-flow")) as bus:
        yield bus


async def _receiver(bus, behaviour=None) -> Receiver:
    receiver = Receiver(bus.secret, behaviour) if behaviour else Receiver(bus.secret)
    await receiver.start()
    return receiver


async def test_verified_subscriber_gets_every_event_in_order_with_idempotency_keys(bus):
    receiver = await _receiver(bus)
    try:
        await bus.subscribe("flow-ok", receiver.url, **FAST)
        records = bus.events_for("flow-ok", persons=5, per_person=6)
        await bus.send(records, headers=[("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")])
        await bus.wait_for(receiver, lambda: len(receiver.events()) >= 30, 60, "all 30 events delivered")
    finally:
        await receiver.stop()
    assert receiver.delivered[0].event["type"] == "no.samband.subscription.validation"  # the handshake came first
    assert_in_order_per_person(receiver.events(), persons=5, per_person=6)
    assert {r.webhook_id for r in receiver.events()} == {r["idempotency_key"] for r in records}
    assert {r.headers["traceparent"] for r in receiver.events()} == {
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    }
    ledger = await _wait_ledger(bus, records[0]["event"]["id"], "flow-ok")
    assert ledger["status"] == "delivered" and ledger["attempts"] == 1


async def test_no_events_flow_until_the_handshake_is_answered(bus):
    verified = []

    def refuse_until_allowed(_n, event):
        if event["type"] == "no.samband.subscription.validation" and not verified:
            return Reply(401)
        return Reply()

    receiver = await _receiver(bus, refuse_until_allowed)
    try:
        await bus.subscribe("flow-handshake", receiver.url, **FAST)
        await bus.send(bus.events_for("flow-handshake", persons=2, per_person=2))
        await bus.wait_for(receiver, lambda: len(receiver.received) >= 2, 30, "the handshake retried")
        assert receiver.events() == []
        verified.append(True)
        await bus.wait_for(receiver, lambda: len(receiver.events()) >= 4, 30, "events after the handshake")
    finally:
        await receiver.stop()
    assert all(r.event["type"] == "no.samband.subscription.validation" for r in receiver.received[:2])
    assert_in_order_per_person(receiver.events(), persons=2, per_person=2)


async def test_failing_subscriber_gets_everything_in_order_after_retries(bus):
    # Every second attempt of each event fails: each event needs a retry, and later events wait.
    def flaky(n, event):
        return Reply(500) if event["type"] != "no.samband.subscription.validation" and n % 2 else Reply()

    receiver = await _receiver(bus, flaky)
    try:
        await bus.subscribe("flow-flaky", receiver.url, **FAST)
        records = bus.events_for("flow-flaky", persons=4, per_person=5)
        await bus.send(records)
        await bus.wait_for(receiver, lambda: len(receiver.events()) >= 20, 60, "all 20 events delivered")
    finally:
        await receiver.stop()
    assert_in_order_per_person(receiver.events(), persons=4, per_person=5)
    assert any(r.status == 500 for r in receiver.received)


async def test_rejected_event_is_dead_lettered_and_later_events_still_flow(bus):
    def reject_one(_n, event):
        return Reply(422) if event["id"] == "rej-0-1" else Reply()

    receiver = await _receiver(bus, reject_one)
    try:
        await bus.subscribe("flow-reject", receiver.url, **FAST)
        await bus.send(bus.events_for("flow-reject", persons=1, per_person=4, prefix="rej"))
        await bus.wait_for(receiver, lambda: len(receiver.events()) >= 3, 30, "the three acceptable events")
    finally:
        await receiver.stop()
    assert [r.event["id"] for r in receiver.events()] == ["rej-0-0", "rej-0-2", "rej-0-3"]
    # The dead letter is written in the stage's next write cycle, after the next event went out.
    dead = await _poll(
        lambda: _dead_letters_of(bus, b"flow-reject/"), lambda found: found, 30, "the dead letter of rej-0-1"
    )
    assert len(dead) == 1
    letter = DeadLetter.from_headers(dead[0].headers)
    assert (letter.reason, letter.stage, letter.subscription) == ("delivery.rejected", "deliver", "flow-reject")
    assert json.loads(open_dead_letter(dead[0].value))["event"]["id"] == "rej-0-1"  # the original record, sealed
    ledger = await _wait_ledger(bus, "rej-0-1", "flow-reject")
    assert (ledger["status"], ledger["reason"], ledger["http_status"]) == ("dead_lettered", "delivery.rejected", 422)


async def test_gone_subscriber_is_disabled_and_keeps_its_events(bus):
    receiver = await _receiver(
        bus, lambda _n, e: Reply(410) if e["type"] != "no.samband.subscription.validation" else Reply()
    )
    try:
        await bus.subscribe("flow-gone", receiver.url, **FAST)
        await bus.send(bus.events_for("flow-gone", persons=1, per_person=3, prefix="gone"))
        await bus.wait_for(receiver, lambda: any(r.status == 410 for r in receiver.received), 30, "answered 410")
        status = await _wait_status(bus, "flow-gone", lambda s: s.get("disabled_reason"))
    finally:
        await receiver.stop()
    assert status["disabled_reason"] == "delivery.gone"
    ledger = await _wait_ledger(bus, "gone-0-0", "flow-gone")
    assert (ledger["status"], ledger["reason"]) == ("held", "delivery.gone")
    assert [r.status for r in receiver.received if r.event["type"] != "no.samband.subscription.validation"] == [410]

    # A fixed endpoint (a changed subscription) is verified again and gets the kept events in order.
    fixed = await _receiver(bus)
    try:
        await bus.subscribe("flow-gone", fixed.url, **FAST)
        await bus.wait_for(fixed, lambda: len(fixed.events()) >= 3, 30, "the kept events")
    finally:
        await fixed.stop()
    assert [r.event["id"] for r in fixed.events()] == ["gone-0-0", "gone-0-1", "gone-0-2"]


async def test_paused_subscription_keeps_events_until_resumed(bus):
    paused, witness = await _receiver(bus), await _receiver(bus)
    try:
        await bus.subscribe("flow-paused", paused.url, paused=True, **FAST)
        await bus.subscribe("flow-witness", witness.url, **FAST)
        await bus.send(bus.events_for("flow-paused", persons=2, per_person=3, prefix="pau"))
        await bus.send(bus.events_for("flow-witness", persons=2, per_person=3, prefix="wit"))
        # The witness's events were produced after the paused one's and have all arrived,
        # so the worker has read the paused subscription's too: it holds them.
        await bus.wait_for(witness, lambda: len(witness.events()) >= 6, 30, "the witness's events")
        assert paused.events() == []
        await bus.subscribe("flow-paused", paused.url, paused=False, **FAST)
        await bus.wait_for(paused, lambda: len(paused.events()) >= 6, 30, "the kept events after resume")
    finally:
        await paused.stop()
        await witness.stop()
    assert_in_order_per_person(paused.events(), persons=2, per_person=3)


async def _dead_letters_of(bus, key_prefix: bytes) -> list:
    return [r async for r in read_topic(bus.bootstrap, bus.topic("deadletter")) if r.key.startswith(key_prefix)]


async def _wait_ledger(bus, event_id: str, sub: str, timeout: float = 30.0) -> dict:
    return await _poll(
        lambda: ledger_for_event(bus.bootstrap, bus.topic("delivery-ledger"), event_id),
        lambda found: found.get(sub),
        timeout,
        f"ledger entry {event_id}/{sub}",
    )


async def _wait_status(bus, sub: str, ready, timeout: float = 30.0) -> dict:
    async def statuses():
        return {
            r.key.decode(): json.loads(r.value) async for r in read_topic(bus.bootstrap, bus.topic("delivery-status"))
        }

    return await _poll(
        statuses,
        lambda found: found.get(sub) if found.get(sub) and ready(found[sub]) else None,
        timeout,
        f"status of {sub}",
    )


async def _poll(fetch, pick, timeout: float, what: str):
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if found := pick(await fetch()):
            return found
        await asyncio.sleep(0.2)  # poll interval inside a deadline
    raise AssertionError(f"no {what} within {timeout:.0f} s")


def _cli(bus, *args: str, user_env: dict | None = None):
    import subprocess
    import sys

    env = {**bus.worker.env, **(user_env or {})}
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", "dlq", *args], env=env, capture_output=True, text=True, timeout=60
    )


def _trace(bus, *args: str):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "agents.cli", "trace", *args],
        env=bus.worker.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_dead_letter_replayed_after_the_fix_arrives_once_with_its_webhook_id(bus):
    from delivery_fixtures import delivery, synthetic_identity

    fixed = []
    receiver = await _receiver(bus, lambda _n, e: Reply(400) if e["id"] == "dlq-1" and not fixed else Reply())
    record = delivery("flow-dlq", f"{7:032x}", "dlq-1")
    record["event"]["data"]["identityNumber"] = synthetic_identity(7)  # personal data, synthetic
    try:
        await bus.subscribe("flow-dlq", receiver.url, **FAST)
        await bus.send([record])
        await _wait_ledger(bus, "dlq-1", "flow-dlq")
        listed = _cli(bus, "list", "--subscription", "flow-dlq")
        assert listed.returncode == 0, listed.stderr
        [row] = [line for line in listed.stdout.splitlines() if "flow-dlq" in line]
        dlq_id = row.split()[0]
        assert "delivery.rejected" in row and "dlq-1" in row

        shown = _cli(bus, "show", dlq_id)
        assert shown.returncode == 0 and json.loads(shown.stdout)["event_id"] == "dlq-1"
        refused = _cli(bus, "show", dlq_id, "--reveal", user_env={"SAMBAND_DLQ_KEY": ""})  # no key: nothing opens
        assert refused.returncode == 2 and "SAMBAND_DLQ_KEY" in refused.stderr
        for output in (listed.stdout, shown.stdout, refused.stdout, refused.stderr):
            assert synthetic_identity(7) not in output

        fixed.append(True)
        replayed = _cli(bus, "replay", dlq_id)
        assert replayed.returncode == 0, replayed.stderr
        await bus.wait_for(receiver, lambda: len(receiver.events()) >= 1, 30, "the replayed event")
        await _poll(
            lambda: ledger_for_event(bus.bootstrap, bus.topic("delivery-ledger"), "dlq-1"),
            lambda found: found.get("flow-dlq", {}).get("status") == "delivered",
            30,
            "ledger: delivered",
        )
        again = _cli(bus, "replay", "--subscription", "flow-dlq")  # delivered since: skipped
        assert again.returncode == 0 and "skipped" in again.stdout
    finally:
        await receiver.stop()
    # The trace tells it as it happened (issue 18): it said "delivered after 1 attempt(s)", listed
    # the failed attempts after that, and did not mark the dead letter replayed.
    traced = _trace(bus, "dlq-1", "--json")
    assert traced.returncode == 0, traced.stderr
    trace = json.loads(traced.stdout)
    [done] = trace["deliveries"]
    assert [a["outcome"] for a in done["attempt_log"]] == ["rejected", "delivered"]
    assert done["attempts"] == 2 and done["replays"] == 1
    [letter] = trace["dead_letters"]
    assert letter["id"] == dlq_id and len(letter["replayed_at"]) == 1
    text = _trace(bus, "dlq-1").stdout.splitlines()
    steps = [line.split(maxsplit=1)[1] for line in text[1:] if not line.strip().startswith("now:")]
    assert steps[-3:] == [
        f"flow-dlq: dead-lettered at stage deliver (delivery.rejected), dead letter {dlq_id}",
        f"flow-dlq: replayed from dead letter {dlq_id}",
        "flow-dlq: attempt 2 delivered",
    ], text
    assert any("now: flow-dlq: delivered" in line and "after 2 attempt(s), 1 replay(s)" in line for line in text)
    [arrived] = receiver.events()
    assert arrived.webhook_id == record["idempotency_key"]
    assert arrived.event.get_data()["identityNumber"] == synthetic_identity(7)


async def test_reveal_opens_a_sealed_dead_letter_only_with_the_key_whoever_asks(bus):
    """Finding 11: the reveal once trusted $USER/$LOGNAME. Now the key is the access control."""
    import base64
    import os

    receiver = await _receiver(
        bus, lambda _n, e: Reply(403) if e["type"] != "no.samband.subscription.validation" else Reply()
    )
    try:
        await bus.subscribe("flow-reveal", receiver.url, **FAST)
        await bus.send(bus.events_for("flow-reveal", persons=1, per_person=1, prefix="rev"))
        await _wait_ledger(bus, "rev-0-0", "flow-reveal")
    finally:
        await receiver.stop()
    [dead] = [r async for r in read_topic(bus.bootstrap, bus.topic("deadletter")) if r.key.startswith(b"flow-reveal/")]
    assert dead.value.startswith(b"SDL1") and b"rev-0-0" not in dead.value  # sealed on the topic
    dlq_id = f"{dead.partition}:{dead.offset}"
    for user in ("root", "nobody-in-particular"):
        shown = _cli(bus, "show", dlq_id, "--reveal", user_env={"USER": user, "LOGNAME": user})
        assert shown.returncode == 0, shown.stderr
        assert json.loads(json.loads(shown.stdout)["value"])["idempotency_key"] == "rev-0-0.flow-reveal"
        assert "dlq.revealed" in shown.stderr
    wrong_key = base64.b64encode(os.urandom(32)).decode()
    refused = _cli(bus, "show", dlq_id, "--reveal", user_env={"SAMBAND_DLQ_KEY": wrong_key})
    assert refused.returncode == 2 and "does not open with this key" in refused.stderr
    assert "rev-0-0.flow-reveal" not in refused.stdout + refused.stderr


async def test_a_replay_goes_back_to_the_partition_of_its_subscription_and_person(bus):
    """The router writes each delivery to its person's partition, not to the one Kafka's partitioner
    gives its key; a replay must join the same (subscription, person) queue, so it goes to the
    partition the dead letter was read from."""
    from aiokafka.partitioner import DefaultPartitioner
    from delivery_fixtures import delivery, delivery_key

    from agents.commands.dlq import REPLAY_HEADER

    fixed = []
    receiver = await _receiver(bus, lambda _n, e: Reply(400) if e["id"] == "part-1" and not fixed else Reply())
    record = delivery("flow-part", f"{8:032x}", "part-1")
    key = delivery_key(record)
    hashed = DefaultPartitioner()(key, [0, 1, 2, 3], [0, 1, 2, 3])
    person_partition = (hashed + 1) % 4  # any partition but the key's own
    try:
        await bus.subscribe("flow-part", receiver.url, **FAST)
        await bus.producer.send_and_wait(
            bus.topic("deliveries"), json.dumps(record).encode(), key=key, partition=person_partition
        )
        await _wait_ledger(bus, "part-1", "flow-part")
        listed = _cli(bus, "list", "--subscription", "flow-part")
        [row] = [line for line in listed.stdout.splitlines() if "flow-part" in line]
        fixed.append(True)
        dlq_id = row.split()[0]
        replayed = _cli(bus, "replay", dlq_id)
        assert replayed.returncode == 0, replayed.stderr
        await bus.wait_for(receiver, lambda: len(receiver.events()) >= 1, 30, "the replayed event")
    finally:
        await receiver.stop()
    replays = [
        r
        async for r in read_topic(bus.bootstrap, bus.topic("deliveries"))
        if dict(r.headers).get(REPLAY_HEADER) == dlq_id.encode()
    ]
    assert [r.partition for r in replays] == [person_partition]
