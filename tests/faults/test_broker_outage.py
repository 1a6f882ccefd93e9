"""The bus rides out a broker outage longer than a write may wait (issue 14, finding 1).

A broker of the test's own, a whole `samband worker` (ingest, route, deliver) and HTTP ingest in
front of it; Moves flow to a slow subscriber when the broker is stopped. Before, the delivery stage
died on the first write that outlived its request timeout (about 40 s of outage by default) and
the process exited. Now: HTTP ingest answers 503 with Retry-After, never 202; the worker stays up,
says `degraded` on /healthz, and logs the outage in a few lines, not hundreds a second; once the
broker is back, every accepted event reaches the subscriber, each person's in the order sent, and
new events flow again. `SAMBAND_BROKER_REQUEST_TIMEOUT=5` makes an outage of half a minute (the
broker's own restart) outlast a write's wait, as a longer one would with the default.

`make faults` runs it with the default wait (40 s) and the broker down for 5 minutes, once
stopped and once killed (kill -9): SAMBAND_FAULT_OUTAGE_SECONDS, SAMBAND_FAULT_REQUEST_TIMEOUT and
SAMBAND_FAULT_BROKER_STOPS (`stop,kill`; `make test` runs `stop`) choose.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import aiohttp
import pytest
from fault_counts import count
from own_broker import needs_own_broker, own_broker
from webhook_receiver import VALIDATION_TYPE, Receiver, Reply

from deploy import launcher
from tests.connectors.http_ingest_client import auth, cloudevent, ingest_config, running_ingest, set_tokens
from tests.operations.ops_bus import full_subscription, operations_bus
from tests.routing.routing_events import synthetic_number

pytestmark = [pytest.mark.kafka, needs_own_broker]

PERSONS, MOVES = 10, 6
BATCH = {"Content-Type": "application/cloudevents-batch+json"}
STRUCTURED = {"Content-Type": "application/cloudevents+json"}
PRODUCE_TIMEOUT_S = 3.0  # HTTP ingest's wait for the broker before it answers 503
OUTAGE_S = float(os.environ.get("SAMBAND_FAULT_OUTAGE_SECONDS", "0"))  # the least the broker stays down
REQUEST_TIMEOUT = os.environ.get("SAMBAND_FAULT_REQUEST_TIMEOUT", "5")
STOPS = {"stop": launcher.down, "kill": launcher.kill}  # a clean shutdown, or kill -9


def _moves(wave: str) -> list[list[dict]]:
    return [
        [
            cloudevent("Move", id=f"{wave}-{p}-{n}", person=synthetic_number(1 + p, 1 + p, 60, 200 + p))
            for n in range(MOVES)
        ]
        for p in range(PERSONS)
    ]


def _first_arrivals(receiver: Receiver, wave: str) -> dict[str, list[int]]:
    """Person -> the order their Moves of `wave` first arrived in (re-sent ones, same webhook-id, left out)."""
    order: dict[str, list[int]] = {}
    seen: set[str] = set()
    for received in receiver.events():
        if received.webhook_id in seen or not received.event["id"].startswith(f"{wave}-"):
            continue
        seen.add(received.webhook_id)
        _, person, n = received.event["id"].split("-")
        order.setdefault(person, []).append(int(n))
    return order


async def _health(http: aiohttp.ClientSession, web_url: str) -> dict | None:
    try:
        async with http.get(f"{web_url}/healthz") as response:
            return await response.json()
    except aiohttp.ClientError:
        return None


async def _until(bus, condition, timeout: float, what: str):
    """Poll `condition` (async) until it gives a true value; fail at once if the worker exited."""
    deadline = time.monotonic() + timeout
    while True:
        assert bus.worker.process.poll() is None, (
            f"the worker exited while waiting for {what}:\n{bus.worker.log_tail()}"
        )
        if result := await condition():
            return result
        assert time.monotonic() < deadline, f"not {what} within {timeout:.0f} s:\n{bus.worker.log_tail()}"
        await asyncio.sleep(0.2)  # poll interval inside the deadline


@pytest.mark.timeout(420 + OUTAGE_S)
@pytest.mark.parametrize("stop", os.environ.get("SAMBAND_FAULT_BROKER_STOPS", "stop").split(","))
async def test_a_broker_outage_longer_than_a_write_waits_is_ridden_out_with_nothing_lost_or_reordered(
    stop, tmp_path, monkeypatch
):
    set_tokens(monkeypatch)
    async with own_broker(tmp_path) as broker:
        async with operations_bus(
            broker.bootstrap_servers, tmp_path, {"SAMBAND_BROKER_REQUEST_TIMEOUT": REQUEST_TIMEOUT}
        ) as bus:
            # Slow enough that deliveries, and the delivery stage's writes, are under way when the broker stops.
            receiver = Receiver(
                bus.secret, lambda _n, e: Reply(delay=0.15) if e["type"] != VALIDATION_TYPE else Reply()
            )
            await receiver.start()
            try:
                await bus.put_subscription(
                    full_subscription(
                        "outage", receiver.url, "all", ["Move"], {"Move": ["movedDate"]}, max_concurrency=1
                    )
                )
                await bus.wait_for(receiver, receiver.verified, 60, "verified")
                config = ingest_config(produce_timeout_s=PRODUCE_TIMEOUT_S, retry_after_s=7)
                async with (
                    running_ingest(bus.bootstrap, bus.app_id, config) as source,
                    aiohttp.ClientSession(f"http://127.0.0.1:{source.port}") as http,
                ):

                    async def post(events: list[dict]) -> aiohttp.ClientResponse:
                        async with http.post(
                            "/events", data=json.dumps(events), headers={**BATCH, **auth()}
                        ) as response:
                            await response.read()
                            return response

                    for person in _moves("before"):
                        assert (await post(person)).status == 202
                    await bus.wait_for(receiver, lambda: len(receiver.events()) >= 5, 60, "the first deliveries")
                    log_size = bus.worker.log_path.stat().st_size

                    assert await asyncio.to_thread(STOPS[stop], broker)
                    stopped = time.monotonic()
                    during = cloudevent("Move")
                    async with http.post("/events", json=during, headers={**STRUCTURED, **auth()}) as response:
                        assert response.status == 503, await response.text()
                        assert response.headers["Retry-After"] == "7"
                        assert (await response.json())["errors"][0]["code"] == "kafka.unavailable"
                    assert time.monotonic() - stopped < PRODUCE_TIMEOUT_S + 2, "HTTP ingest's wait is bounded"
                    health = await _until(
                        bus, lambda: _degraded(http, bus.web_url), 60 + float(REQUEST_TIMEOUT), "degraded on /healthz"
                    )
                    assert any("broker unavailable" in reason for reason in health["reasons"]), health
                    if (left := OUTAGE_S - (time.monotonic() - stopped)) > 0:
                        await asyncio.sleep(left)  # the fault's length (make faults), not a wait for an outcome
                        assert bus.worker.process.poll() is None, bus.worker.log_tail()
                        assert (await _degraded(http, bus.web_url)) is not None, "degraded all through the outage"

                    await asyncio.to_thread(launcher.up, broker)  # same ports and state: the broker is back
                    outage = time.monotonic() - stopped
                    await _until(bus, lambda: _alive(http, bus.web_url), 120, "alive again on /healthz")
                    lines = bus.worker.log_path.read_bytes()[log_size:].count(b"\n")
                    assert lines < 10 * outage, f"{lines} log lines in a {outage:.0f} s outage"

                    await bus.wait_for(
                        receiver,
                        lambda: sum(map(len, _first_arrivals(receiver, "before").values())) == PERSONS * MOVES,
                        120,
                        "every Move accepted before the outage",
                    )
                    for person in _moves("after"):
                        await _until(bus, lambda p=person: _accepted(post, p), 60, "HTTP ingest accepting again")
                    await bus.wait_for(
                        receiver,
                        lambda: sum(map(len, _first_arrivals(receiver, "after").values())) == PERSONS * MOVES,
                        120,
                        "every Move sent after the outage",
                    )
            finally:
                await receiver.stop()
            assert "stage.broker_unavailable" in bus.worker.log_path.read_text()
            for wave in ("before", "after"):
                wrong = {
                    p: order for p, order in _first_arrivals(receiver, wave).items() if order != list(range(MOVES))
                }
                assert not wrong, f"{wave} the outage, {len(wrong)} persons' Moves arrived out of order: {wrong}"
            sent = {
                f"{wave}-{p}-{n}.outage" for wave in ("before", "after") for p in range(PERSONS) for n in range(MOVES)
            }
            # Refused with 503 while the broker was away, yet it may have been written once the broker
            # came back (its client would send it again after Retry-After): delivered or not, both are right.
            sent.add(f"{during['id']}.outage")
            counts = count(
                f"broker {'stopped' if stop == 'stop' else 'killed (kill -9)'} for {outage:.0f} s, "
                f"writes wait {REQUEST_TIMEOUT} s",
                {"outage": sent},
                {"outage": receiver.events()},
                _place,
            ).report()
            assert (
                counts.lost - (f"{during['id']}.outage" not in receiver.unique_ids),
                counts.wrong,
                counts.out_of_order,
            ) == (0, 0, 0), counts


def _place(arrival) -> tuple[str, int]:
    if arrival.event["id"].count("-") != 2:
        return arrival.event["id"], 0  # the Move sent during the outage: a person of its own
    wave, person, n = arrival.event["id"].split("-")
    return f"{wave}-{person}", int(n)


async def _degraded(http, web_url):
    health = await _health(http, web_url)
    return health if health and health["status"] == "degraded" else None


async def _alive(http, web_url):
    health = await _health(http, web_url)
    return health is not None and health["status"] == "alive"


async def _accepted(post, events) -> bool:
    return (await post(events)).status == 202
