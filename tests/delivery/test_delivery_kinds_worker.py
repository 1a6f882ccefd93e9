"""Delivery kinds other than webhook and Kafka, through a real worker: batch files in the operator's
folder, and a kind installed as a package of its own (the SFTP drop example) to a real SFTP server."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from checkout import register_checkout
from delivery_bus import DeliveryBus, running_bus
from sftp_server import sftp_server

PERSONS, PER_PERSON = 4, 5


def lines_in_name_order(paths: list[Path]) -> list[dict]:
    return [json.loads(line) for path in sorted(paths, key=lambda p: p.name) for line in path.read_text().splitlines()]


async def wait_for_lines(bus: DeliveryBus, files, expected: set[str], timeout: float = 90) -> list[dict]:
    """The lines in the subscriber's finished files once every key in `expected` is there."""
    async with asyncio.timeout(timeout):
        while True:
            if bus.worker.process.poll() is not None:
                raise AssertionError(f"worker exited:\n{bus.worker.log_tail()}")
            lines = lines_in_name_order(files())
            if expected <= {line["idempotency_key"] for line in lines}:
                return lines
            await asyncio.sleep(0.1)  # poll interval inside the deadline


def assert_in_order_per_person(lines: list[dict], records: list[dict]) -> None:
    subject_of = {}
    for line in lines:
        assert set(line) == {"idempotency_key", "event"}, "a line carries the key and the event, nothing of the bus's"
        subject_of.setdefault(line["event"]["subject"], []).append(line["event"]["data"]["seq"])
    assert len(subject_of) == PERSONS
    for subject, seqs in subject_of.items():
        first = list(dict.fromkeys(seqs))  # a re-delivery repeats a key; its first arrival counts
        assert first == list(range(PER_PERSON)), f"person {subject[:8]}: in order {first}"
    persons = {r["person"] for r in records}
    text = json.dumps(lines)
    assert not any(p in text for p in persons), "the bus's pseudonym of a person reached the subscriber"


async def test_a_files_subscription_gets_batch_files_in_its_own_folder_in_order(kafka_bootstrap, tmp_path):
    outbound = tmp_path / "outbound"
    async with running_bus(kafka_bootstrap, tmp_path, SAMBAND_FILES_OUTBOUND_DIR=str(outbound)) as bus:
        await bus.put_subscription({"id": "alta-files", "delivery": {"kind": "files", "max_age_s": 1}})
        records = DeliveryBus.events_for("alta-files", PERSONS, PER_PERSON)
        await bus.send(records)
        lines = await wait_for_lines(
            bus, lambda: list((outbound / "alta-files").glob("*.jsonl")), {r["idempotency_key"] for r in records}
        )
    assert_in_order_per_person(lines, records)
    assert sorted(p.name for p in outbound.iterdir()) == ["alta-files"]


async def test_a_kind_installed_as_a_package_of_its_own_delivers_through_the_worker(kafka_bootstrap, tmp_path):
    async with sftp_server(tmp_path / "sftp") as server:
        env = {
            "PYTHONPATH": os.pathsep.join([*register_checkout(), os.environ.get("PYTHONPATH", "")]),
            "SAMBAND_SFTP_PASSWORD_ALTA_SFTP": server.password,
        }
        async with running_bus(kafka_bootstrap, tmp_path, **env) as bus:
            delivery = {
                "kind": "sftp",
                "host": server.host,
                "port": server.port,
                "username": server.username,
                "password_ref": "env:SAMBAND_SFTP_PASSWORD_ALTA_SFTP",
                "host_key": server.host_key,
                "directory": "inbox",
            }
            await bus.put_subscription({"id": "alta-sftp", "delivery": delivery})
            records = DeliveryBus.events_for("alta-sftp", PERSONS, PER_PERSON)
            await bus.send(records)
            lines = await wait_for_lines(bus, server.received, {r["idempotency_key"] for r in records})
    assert_in_order_per_person(lines, records)
