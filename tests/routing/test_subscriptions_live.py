"""Subscriptions through the HTTP API and the CLI while events flow: each change takes effect
on a running worker within 5 s, with no restart."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiohttp
import yaml
from bus_settings import API_TOKEN, READ_TOKEN
from bus_watch import TopicWatch, delivered
from kafka_io import produce
from routing_events import encode, event, synthetic_number
from subscription_factory import subscription
from worker_process import WorkerProcess

BERGEN, OSLO, TRONDHEIM = "4601", "0301", "5001"
EFFECT_WITHIN = 5.0


async def _wait_http(url: str, worker: WorkerProcess, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline:
            assert worker.process.poll() is None, worker.log_tail()
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)  # poll interval inside a deadline
    raise AssertionError(f"{url} did not answer within {timeout} s:\n{worker.log_tail()}")


def _death(kommune: str, n: int) -> dict:
    return event("Death", synthetic_number(1 + n % 28, 1 + n % 12, 50, 100 + n), [kommune])


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", "subscriptions", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_api_and_cli_changes_take_effect_within_seconds(kafka_bootstrap, bus, bus_env, tmp_path):
    base = f"http://127.0.0.1:{bus_env['SAMBAND_WEB_PORT']}"
    write = {"Authorization": f"Bearer {API_TOKEN}"}
    read_only = {"Authorization": f"Bearer {READ_TOKEN}"}
    bergen = json.loads(subscription("bergen-skole", [BERGEN], ["Death"], {"Death": ["deathDate"]}).to_json())

    worker = WorkerProcess(bus_env, tmp_path / "worker.log")
    worker.start()
    flowing = asyncio.Event()

    async def background_flow() -> None:  # events nobody subscribes to, all the time
        for n in range(10_000):
            await produce(kafka_bootstrap, bus.ingest, [encode(_death(TRONDHEIM, n))])
            flowing.set()

    flow = asyncio.create_task(background_flow())
    try:
        await _wait_http(f"{base}/openapi.json", worker)
        async with aiohttp.ClientSession(base_url=base) as http, TopicWatch(kafka_bootstrap, bus.deliveries) as out:
            async with http.get("/openapi.json") as r:
                assert {"/subscriptions", "/subscriptions/{id}"} <= set((await r.json())["paths"])
            async with http.get("/subscriptions") as r:
                assert r.status == 401 and (await r.json())["error"] == "auth.unauthenticated"
            async with http.post("/subscriptions", json=bergen, headers=read_only) as r:
                assert r.status == 403 and (await r.json())["error"] == "auth.scope_missing"
            async with http.post("/subscriptions", json={**bergen, "legal_basis": ""}, headers=write) as r:
                body = await r.json()
                assert r.status == 422 and any(p.startswith("legal_basis") for p in body["problems"])
            await flowing.wait()

            # Create through the API: the next event is routed to it.
            async with http.post("/subscriptions", json=bergen, headers=write) as r:
                assert r.status == 201
            first = _death(BERGEN, 1)
            await produce(kafka_bootstrap, bus.ingest, [encode(first)])
            await out.wait_for(
                lambda _: delivered(out, "bergen-skole", first["envelope"]["id"]),
                EFFECT_WITHIN,
                "a subscription created through the API receives the next event",
            )
            async with http.post("/subscriptions", json=bergen, headers=write) as r:
                assert r.status == 409
            async with http.get("/subscriptions/bergen-skole", headers=read_only) as r:
                assert (await r.json())["kommuner"] == [BERGEN]

            # Change its projection: the next event carries the newly granted field.
            changed = {**bergen, "fields": {"Death": ["deathDate", "envelope.kommunenummer"]}}
            async with http.put("/subscriptions/bergen-skole", json=changed, headers=write) as r:
                assert r.status == 200
            second = _death(BERGEN, 2)
            await produce(kafka_bootstrap, bus.ingest, [encode(second)])
            await out.wait_for(
                lambda _: delivered(out, "bergen-skole", second["envelope"]["id"]),
                EFFECT_WITHIN,
                "the changed subscription receives the next event",
            )
            data = delivered(out, "bergen-skole", second["envelope"]["id"])[0]["event"]["data"]
            assert data == {"deathDate": second["deathDate"].isoformat(), "envelope": {"kommunenummer": [BERGEN]}}

            # Apply a directory with the CLI: the worker picks it up with no restart.
            config = tmp_path / "subscriptions"
            config.mkdir()
            oslo = json.loads(subscription("oslo-bibliotek", [OSLO], ["Death"], {"Death": ["deathDate"]}).to_json())
            (config / "oslo.yaml").write_text(yaml.safe_dump(oslo))
            applied = _cli(bus_env, "apply", str(config))
            assert applied.returncode == 0, applied.stderr
            third = _death(OSLO, 3)
            await produce(kafka_bootstrap, bus.ingest, [encode(third)])
            await out.wait_for(
                lambda _: delivered(out, "oslo-bibliotek", third["envelope"]["id"]),
                EFFECT_WITHIN,
                "a subscription applied with the CLI receives the next event",
            )
            listed = _cli(bus_env, "list")
            assert "bergen-skole" in listed.stdout and "oslo-bibliotek" in listed.stdout

            # Delete with the CLI: gone from the worker within 5 s, and nothing more is routed to it.
            assert _cli(bus_env, "delete", "bergen-skole").returncode == 0
            deadline = asyncio.get_running_loop().time() + EFFECT_WITHIN
            while True:
                async with http.get("/subscriptions/bergen-skole", headers=read_only) as r:
                    if r.status == 404:
                        break
                assert asyncio.get_running_loop().time() < deadline, "deletion not applied within 5 s"
                await asyncio.sleep(0.1)  # poll interval inside a deadline
            after_bergen, after_oslo = _death(BERGEN, 4), _death(OSLO, 5)
            await produce(kafka_bootstrap, bus.ingest, [encode(after_bergen), encode(after_oslo)])
            await out.wait_for(
                lambda _: delivered(out, "oslo-bibliotek", after_oslo["envelope"]["id"]),
                EFFECT_WITHIN,
                "the remaining subscription still receives events",
            )
            assert not [d for d in out.deliveries() if d["event"]["id"] == after_bergen["envelope"]["id"]]
    finally:
        flow.cancel()
        assert worker.stop() == 0, worker.log_tail()


async def test_an_event_ingested_after_a_subscription_is_written_is_routed_under_it(
    kafka_bootstrap, bus, bus_env, tmp_path
):
    """No window between "subscription acknowledged" and "routed under it": the router reads the
    subscriptions topic up to its end before each batch. Ten times, a new subscription is written
    and an event for it ingested right after, while other events keep the router busy."""
    from agents.subscriptions.store import write

    worker = WorkerProcess(bus_env, tmp_path / "worker.log")
    worker.start()

    async def background_flow() -> None:
        for n in range(10_000):
            await produce(kafka_bootstrap, bus.ingest, [encode(_death(TRONDHEIM, n))])

    flow = asyncio.create_task(background_flow())
    expected: list[tuple[str, str]] = []
    try:
        await _wait_http(f"http://127.0.0.1:{bus_env['SAMBAND_WEB_PORT']}/openapi.json", worker)
        async with TopicWatch(kafka_bootstrap, bus.deliveries) as out:
            for n in range(10):
                sub = subscription(f"ny-{n}", [BERGEN], ["Death"], {"Death": ["deathDate"]})
                await write(kafka_bootstrap, bus.subscriptions, [(sub.id, sub.to_json())])
                death = _death(BERGEN, 100 + n)
                await produce(kafka_bootstrap, bus.ingest, [encode(death)])
                expected.append((sub.id, death["envelope"]["id"]))
            await out.wait_for(
                lambda _: all(delivered(out, s, e) for s, e in expected),
                30,
                "each event routed to the subscription written just before it",
            )
    finally:
        flow.cancel()
        assert worker.stop() == 0, worker.log_tail()
