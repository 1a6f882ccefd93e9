"""`samband subscriptions pause|resume ID` on a running worker: while paused, the subscription's
events are kept (another subscription to the same events gets them meanwhile); on resume they
arrive, in order."""

from __future__ import annotations

from ops_bus import full_subscription
from routing_events import encode, event, synthetic_number
from samband_cli import samband
from webhook_receiver import Receiver

FAST = {"retry_schedule": [1, 1], "read_timeout": 1.0, "connect_timeout": 0.5}


async def test_pause_keeps_events_and_resume_delivers_them_in_order(ops_bus):
    paused, witness = Receiver(ops_bus.secret), Receiver(ops_bus.secret)
    await paused.start()
    await witness.start()
    env = {"SAMBAND_APP_ID": ops_bus.app_id}
    try:
        for sub, receiver in (("ops-paused", paused), ("ops-witness", witness)):
            value = full_subscription(
                sub, receiver.url, ["1103"], ["Death", "NameChange"], {"Death": ["deathDate"], "NameChange": []}, **FAST
            )
            await ops_bus.put_subscription(value)
            await ops_bus.wait_for(receiver, receiver.verified, 60, f"{sub} verified")

        result = await samband(ops_bus.bootstrap, "subscriptions", "pause", "ops-paused", env=env)
        assert result.code == 0 and "paused ops-paused" in result.stdout, result.stderr
        again = await samband(ops_bus.bootstrap, "subscriptions", "pause", "ops-paused", env=env)
        assert again.code == 0 and "already paused" in again.stdout
        missing = await samband(ops_bus.bootstrap, "subscriptions", "pause", "no-such-sub", env=env)
        assert missing.code == 1 and "no subscription no-such-sub" in missing.stderr

        person = synthetic_number(14, 5, 61, 500)
        first, second = event("NameChange", person, ["1103"]), event("Death", person, ["1103"])
        for record in (first, second):
            await ops_bus.producer.send_and_wait(
                ops_bus.topic("ingest"), encode(record), key=record["envelope"]["id"].encode()
            )
        # The witness has both, so the worker has routed them to the paused subscription too.
        await ops_bus.wait_for(witness, lambda: len(witness.events()) == 2, 60, "the witness's events")
        assert paused.events() == []

        result = await samband(ops_bus.bootstrap, "subscriptions", "resume", "ops-paused", env=env)
        assert result.code == 0 and "resumed ops-paused" in result.stdout, result.stderr
        await ops_bus.wait_for(paused, lambda: len(paused.events()) == 2, 60, "the kept events after resume")
    finally:
        await paused.stop()
        await witness.stop()
    assert [r.event["id"] for r in paused.events()] == [first["envelope"]["id"], second["envelope"]["id"]]
