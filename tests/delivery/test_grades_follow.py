"""Delivery reads each person's grade (the router's person state) whole at its start, then follows
only what is written after: read again from the beginning, an older grade would hold until the
newer one came round again, and a delivery could leave under it (a protected person read as
unprotected). Built in this process (agents/assembly.py) to watch every grade it applies."""

from __future__ import annotations

import asyncio

from support import unique_name

from agents.assembly import Stages, build_stages
from agents.config import Settings
from agents.routing.router import PersonState
from bus import clients
from bus.topics import ROUTER_PERSONS


async def _write(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = clients.durable_producer(bootstrap)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key, partition=0)
    finally:
        await producer.stop()


async def test_after_its_start_delivery_applies_only_grades_written_later(kafka_bootstrap, tmp_path):
    settings = Settings(
        app_id=unique_name("grades"), kafka_bootstrap_servers=kafka_bootstrap, data_dir=str(tmp_path / "data")
    )
    persons = await ROUTER_PERSONS.ensure(kafka_bootstrap, settings.app_id)
    await _write(
        kafka_bootstrap,
        persons,
        [(b"p" * 32, PersonState().to_json()), (b"p" * 32, PersonState("strengtFortrolig").to_json())],
    )
    runtime, services = build_stages(settings, ["deliver"])
    (delivery,) = runtime.stages
    applied_later: list[tuple[bytes, str]] = []
    apply_state = delivery.grades.apply_state

    def watched(key: bytes, value: bytes | None) -> None:
        apply_state(key, value)
        if delivery.subscriptions_read.is_set():
            applied_later.append((key, delivery.grades.of(key.decode())))

    delivery.grades.apply_state = watched
    stages = Stages(services)
    await stages.start()
    try:
        async with asyncio.timeout(60):
            await delivery.subscriptions_read.wait()
            assert delivery.grades.of("p" * 32) == "strengtFortrolig"
            await _write(kafka_bootstrap, persons, [(b"q" * 32, PersonState("fortrolig").to_json())])
            while not applied_later:
                await asyncio.sleep(0.05)  # poll interval inside the timeout
        assert applied_later == [(b"q" * 32, "fortrolig")]  # p's older records were not applied again
        assert delivery.grades.of("p" * 32) == "strengtFortrolig"
    finally:
        await stages.stop()
