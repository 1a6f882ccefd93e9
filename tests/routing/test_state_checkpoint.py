"""A worker stopped cleanly keeps its state files with a checkpoint of the changelog offsets they
reflect, and the next worker on the same data directory reads the changelogs only from there
(bus/store.py) instead of whole. What it then knows must be everything: the state it had, and what
another worker wrote meanwhile. Proved where it matters most: a person who becomes strengt
fortrolig gets a purge at every subscription that received the address, whichever worker sent it."""

from __future__ import annotations

import json
from datetime import date

from aiokafka import AIOKafkaConsumer, TopicPartition
from bus_settings import PSEUDONYM_KEY
from kafka_io import produce, read_to_end
from routing_events import address, encode, event, synthetic_number
from subscription_factory import subscription
from support import free_port
from worker_process import WorkerProcess, wait_for_commits, wait_until

from agents.subscriptions.store import write
from schemas.pseudonym import pseudonym

OSLO = "0301"
TODAY = date.today()
P_NUMBER, Q_NUMBER = synthetic_number(3, 4, 85, 510), synthetic_number(5, 6, 87, 520)
P, Q = (pseudonym(n, PSEUDONYM_KEY.encode()) for n in (P_NUMBER, Q_NUMBER))
SCHOOL = subscription(
    "oslo-skole",
    [OSLO],
    ["Move", "AddressProtectionChange"],
    {"Move": ["envelope.person", "newAddress"], "AddressProtectionChange": ["protection"]},
)


def _move(number: str) -> dict:
    return event(
        "Move", number, [OSLO], movedDate=TODAY, previousAddress=address(OSLO, "Forrige", 1),
        newAddress=address(OSLO, "Nyvegen", 7), scope="withinKommune", cause="relocation",
    )  # fmt: skip


def _protected(number: str) -> dict:
    return event(
        "AddressProtectionChange", number, [OSLO], protection="strengtFortrolig",
        envelope={"addressProtection": "strengtFortrolig"},
    )  # fmt: skip


async def _route(bootstrap: str, ingest: str, records: list[dict]) -> None:
    keys = [pseudonym(r["envelope"]["person"], PSEUDONYM_KEY.encode()).encode() for r in records]
    await produce(bootstrap, ingest, [encode(r) for r in records], keys)


async def _records_in(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets([TopicPartition(topic, p) for p in range(4)])).values())
    finally:
        await consumer.stop()


def _resumed(log_path, topic: str) -> list[dict]:
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "state.resumed" and line.get("topic") == topic]


async def test_a_restarted_worker_resumes_its_state_from_its_checkpoint_and_knows_what_another_wrote_meanwhile(
    kafka_bootstrap, bus, bus_env, tmp_path
):
    env = {**bus_env, "SAMBAND_WORKER_PROCESSES": "1"}
    router = f"{env['SAMBAND_APP_ID']}-router"
    await write(kafka_bootstrap, bus.subscriptions, [(SCHOOL.id, SCHOOL.to_json())])
    first = WorkerProcess(env, tmp_path / "first.log")

    await _route(kafka_bootstrap, bus.ingest, [_move(P_NUMBER)])  # the school gets P's address
    first.start()
    try:
        await wait_for_commits(kafka_bootstrap, router, 1, timeout=90, worker=first)
    finally:
        assert first.stop() == 0, first.log_tail()
    persons_at_stop = await _records_in(kafka_bootstrap, bus.router_persons)

    # Meanwhile another worker, with a data directory of its own, sends the school Q's address.
    other = WorkerProcess({**env, "SAMBAND_DATA_DIR": str(tmp_path / "other-data")}, tmp_path / "other.log")
    await _route(kafka_bootstrap, bus.ingest, [_move(Q_NUMBER)])
    other.start()
    try:
        await wait_for_commits(kafka_bootstrap, router, 2, timeout=90, worker=other)
    finally:
        assert other.stop() == 0, other.log_tail()
    written_meanwhile = await _records_in(kafka_bootstrap, bus.router_persons) - persons_at_stop
    assert written_meanwhile > 0

    # The first worker again, on its own data directory: both become strengt fortrolig.
    again = WorkerProcess(env, tmp_path / "again.log")
    await _route(kafka_bootstrap, bus.ingest, [_protected(P_NUMBER), _protected(Q_NUMBER)])
    again.start()
    try:
        await wait_for_commits(kafka_bootstrap, router, 4, timeout=90, worker=again)
    finally:
        assert again.stop() == 0, again.log_tail()

    resumed = _resumed(tmp_path / "again.log", bus.router_persons)
    assert len(resumed) == 1, again.log_tail()
    assert [int(p) for p in resumed[0]["partitions"]] == [0, 1, 2, 3] and resumed[0]["read_whole"] == []
    assert int(resumed[0]["records_read"]) == written_meanwhile  # only what was written after its checkpoint
    assert not _resumed(tmp_path / "other.log", bus.router_persons)  # a data directory of its own: read whole

    deliveries = [json.loads(r.value) for r in await read_to_end(kafka_bootstrap, bus.deliveries)]
    purges = {d["person"] for d in deliveries if d["kind"] == "purge" and d["subscription"] == SCHOOL.id}
    assert purges == {P, Q}  # P from the state it kept, Q from the state read since the checkpoint


def _router_partitions(log_path, group: str) -> list[list[int]]:
    """Each assignment of the router's group in a worker's log, in order."""
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    return [
        [int(p) for p in line["partitions"]]
        for line in lines
        if line.get("event") == "batch_partitions_assigned" and line.get("group") == group
    ]


async def test_a_worker_restarted_beside_another_gets_its_partitions_back_and_resumes_them(
    kafka_bootstrap, bus, bus_env, tmp_path
):
    """Workers are ordered by their id in the co-partitioned assignment: a restarted worker takes the
    id of the files it takes over, so it is given the same partitions and resumes them, rather than
    the other worker's, read whole."""
    env = {**bus_env, "SAMBAND_WORKER_PROCESSES": "1"}
    router = f"{env['SAMBAND_APP_ID']}-router"
    await write(kafka_bootstrap, bus.subscriptions, [(SCHOOL.id, SCHOOL.to_json())])
    numbers = [synthetic_number(1 + i, 1 + i, 80, 530 + i) for i in range(8)]
    other = WorkerProcess(env, tmp_path / "other.log")
    b_env = {**env, "SAMBAND_WEB_PORT": str(free_port()), "SAMBAND_DATA_DIR": str(tmp_path / "b-data")}
    first, again = WorkerProcess(b_env, tmp_path / "first.log"), WorkerProcess(b_env, tmp_path / "again.log")
    other.start()
    try:
        first.start()
        try:
            await wait_until(
                lambda: (got := _router_partitions(tmp_path / "first.log", router)) and 0 < len(got[-1]) < 4,
                90, "a share of the partitions beside the other worker", first, other,
            )  # fmt: skip
            await _route(kafka_bootstrap, bus.ingest, [_move(n) for n in numbers])
            await wait_for_commits(kafka_bootstrap, router, len(numbers), timeout=90, worker=first)
            held = _router_partitions(tmp_path / "first.log", router)[-1]
            assert held and len(held) < 4  # a share of the partitions, the other worker the rest
        finally:
            assert first.stop() == 0, first.log_tail()

        await _route(kafka_bootstrap, bus.ingest, [_protected(n) for n in numbers])
        again.start()
        try:
            await wait_until(
                lambda: (got := _router_partitions(tmp_path / "again.log", router)) and got[-1], 90, "a share", again
            )
            await wait_for_commits(kafka_bootstrap, router, 2 * len(numbers), timeout=90, worker=again)
        finally:
            assert again.stop() == 0, again.log_tail()
    finally:
        assert other.stop() == 0, other.log_tail()

    assert _router_partitions(tmp_path / "again.log", router)[0] == held  # the same partitions at once
    resumed = _resumed(tmp_path / "again.log", bus.router_persons)
    assert [int(p) for p in resumed[0]["partitions"]] == held and resumed[0]["read_whole"] == []
    deliveries = [json.loads(r.value) for r in await read_to_end(kafka_bootstrap, bus.deliveries)]
    purges = {d["person"] for d in deliveries if d["kind"] == "purge" and d["subscription"] == SCHOOL.id}
    assert purges == {pseudonym(n, PSEUDONYM_KEY.encode()) for n in numbers}
