"""Acceptance (issue 13, finding 0): one person's events reach every subscriber in the order the source
sent them, through HTTP ingest and a whole worker, whether they come in one batch request, one request
at a time, or as a backlog the worker finds when it starts. Each mode, 50 times at once: 50 persons
with 8 Moves each, all sent before the check, so their records share the topics and the batches.
`make order-acceptance` repeats the three modes in 50 rounds (a worker restart for each backlog):
SAMBAND_ORDER_ROUNDS and SAMBAND_ORDER_PERSONS choose the run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import aiohttp
import pytest
from ops_bus import full_subscription, operations_bus
from routing_events import synthetic_number
from webhook_receiver import Receiver

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "connectors"))
from http_ingest_client import auth, cloudevent, ingest_config, running_ingest, set_tokens

PERSONS, MOVES = int(os.environ.get("SAMBAND_ORDER_PERSONS", "50")), 8
ROUNDS = int(os.environ.get("SAMBAND_ORDER_ROUNDS", "1"))
MODES = ("batch", "single", "backlog")
BATCH = {"Content-Type": "application/cloudevents-batch+json"}
STRUCTURED = {"Content-Type": "application/cloudevents+json"}


def _moves(mode: str, rnd: int, person: int) -> list[dict]:
    number = synthetic_number(1 + person % 28, 1 + person % 12, 70 + MODES.index(mode), 100 + person // 336)
    return [cloudevent("Move", id=f"{mode}{rnd}-{person}-{n}", person=number) for n in range(MOVES)]


def _order_per_person(receiver: Receiver, mode: str) -> dict[str, list[int]]:
    order: dict[str, list[int]] = {}
    for received in receiver.events():
        event_id = received.event["id"]
        if event_id.startswith(f"{mode}-"):
            _, person, n = event_id.split("-")
            order.setdefault(person, []).append(int(n))
    return order


@pytest.fixture(scope="module")
async def order_bus(kafka_bootstrap, tmp_path_factory):
    async with operations_bus(kafka_bootstrap, tmp_path_factory.mktemp("order-bus")) as bus:
        yield bus


@pytest.mark.timeout(420 * ROUNDS)
async def test_one_persons_events_arrive_in_the_order_sent_in_a_batch_one_by_one_and_from_a_backlog(
    order_bus, monkeypatch
):
    set_tokens(monkeypatch)
    receivers = [Receiver(order_bus.secret), Receiver(order_bus.secret)]
    for n, receiver in enumerate(receivers):
        await receiver.start()
        value = full_subscription(f"order-{n}", receiver.url, "all", ["Move"], {"Move": ["movedDate"]})
        await order_bus.put_subscription(value)
    try:
        for receiver in receivers:
            await order_bus.wait_for(receiver, receiver.verified, 60, "verified")
        async with running_ingest(order_bus.bootstrap, order_bus.app_id, ingest_config()) as source:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{source.port}") as http:

                async def post(events: list[dict], headers: dict) -> None:
                    body = json.dumps(events if headers is BATCH else events[0])
                    async with http.post("/events", data=body, headers={**headers, **auth()}) as response:
                        assert response.status == 202, await response.text()

                for rnd, mode in ((r, m) for r in range(ROUNDS) for m in MODES):
                    if mode == "backlog":
                        assert order_bus.worker.stop() == 0, order_bus.worker.log_tail()
                    for person in range(PERSONS):
                        if mode == "single":
                            for move in _moves(mode, rnd, person):
                                await post([move], STRUCTURED)  # the next only after the 202
                        else:
                            await post(_moves(mode, rnd, person), BATCH)
                    if mode == "backlog":
                        order_bus.worker.start()
                    for receiver in receivers:
                        await order_bus.wait_for(
                            receiver,
                            lambda r=receiver, m=f"{mode}{rnd}": (
                                sum(map(len, _order_per_person(r, m).values())) >= PERSONS * MOVES
                            ),
                            180,
                            f"every {mode} event of round {rnd}",
                        )
    finally:
        for receiver in receivers:
            await receiver.stop()

    for receiver in receivers:
        for rnd, mode in ((r, m) for r in range(ROUNDS) for m in MODES):
            order = _order_per_person(receiver, f"{mode}{rnd}")
            assert len(order) == PERSONS
            wrong = {person: arrived for person, arrived in order.items() if arrived != list(range(MOVES))}
            assert not wrong, (
                f"{mode}, round {rnd}: {len(wrong)} of {PERSONS} persons' Moves arrived out of order, "
                f"e.g. {next(iter(wrong.items()))}"
            )
    print(
        f"order: {ROUNDS} round(s) x {len(MODES)} modes x {PERSONS} persons x {MOVES} Moves, to {len(receivers)} "
        f"subscribers: every person's Moves in the order sent"
    )
