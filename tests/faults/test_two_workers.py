"""Two workers: handovers keep each person's order, and a killed worker pauses only its own partitions (issue 14).

Run by `make test` and `make faults` alike. A subscriber answers every
request after 50 ms, so each worker's lane holds many heads queued when its partitions move.
Each rebalance hands partitions over while attempts are on their way or queued. Before, a
worker kept sending the heads of partitions it had given up (they sat in its lanes), and an
attempt's outcome released a person's next event while that person's head was queued again:
an event could arrive after a later one of the same person. Now, through the graceful
handovers, every arrival, repeats included, keeps each person's order; after the kill only
first arrivals must (a killed worker's work goes again from its last commit); nothing is lost,
nothing wrong is sent (fault_counts.py).

Then the whole pipeline on two workers, one killed with kill -9. Before, the three stages'
groups assigned partitions independently, so every event passed through both workers and all
deliveries stopped until the dead one's session timed out. Now a worker holds the same
partition numbers in every stage (bus/assignor.py): the survivor delivers the persons
of its own partitions at once, and the dead one's resume after the session timeout.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

import aiohttp
from bus_settings import PSEUDONYM_KEY
from delivery_bus import DeliveryBus
from fault_counts import count, subject_and_seq
from support import free_port, pseudonym_key, until
from webhook_receiver import Receiver, Reply
from worker_process import WorkerProcess, wait_until

from bus.inspector import KafkaInspector
from bus.record_batches import murmur2
from schemas.pseudonym import pseudonym
from tests.connectors.http_ingest_client import auth, cloudevent, ingest_config, running_ingest, set_tokens
from tests.operations.ops_bus import full_subscription, operations_bus
from tests.routing.routing_events import synthetic_number

PERSONS, PER_PERSON = 200, 6
SUB = "handover"


def _assigned(worker: WorkerProcess, since: int = 0) -> dict[str, set[int]]:
    """Stage group -> the partitions it was last assigned on this worker (its log after byte `since` says so)."""
    with worker.log_path.open("rb") as log:
        log.seek(since)
        lines = log.read().decode(errors="replace").splitlines()
    return {
        line["group"]: {int(p) for p in line["partitions"]} for line in map(json.loads, filter(_is_assignment, lines))
    }


def _is_assignment(line: str) -> bool:
    return '"batch_partitions_assigned"' in line and line.startswith("{")


def _holds_partitions(worker: WorkerProcess, since: int) -> bool:
    return any(group.endswith("-delivery") and held for group, held in _assigned(worker, since).items())


async def test_handovers_between_two_workers_lose_nothing_and_never_send_a_persons_event_after_a_later_one(
    kafka_bootstrap, worker_env, tmp_path
):
    # A short session timeout, so the killed worker's partitions move to the other within the test.
    bus = DeliveryBus(
        kafka_bootstrap, {**worker_env, "SAMBAND_BROKER_SESSION_TIMEOUT": "10"}, tmp_path / "worker-1.log"
    )
    second = WorkerProcess(
        {**bus.worker.env, "SAMBAND_WEB_PORT": str(free_port()), "SAMBAND_DATA_DIR": str(tmp_path / "worker-2-data")},
        tmp_path / "worker-2.log",
    )
    receiver = Receiver(bus.secret, lambda _n, _e: Reply(delay=0.05))
    await receiver.start()
    await bus.start()
    total = PERSONS * PER_PERSON
    delivered = lambda share: lambda: len(receiver.unique_ids) >= total * share  # noqa: E731
    try:
        await bus.subscribe(SUB, receiver.url, max_concurrency=4, retry_schedule=[0.2, 0.5, 1, 1, 1])
        records = bus.events_for(SUB, PERSONS, PER_PERSON)
        await bus.send(records)
        await wait_until(delivered(0.1), 120, "a tenth delivered", bus.worker)

        second.start()  # joins: the first hands half its partitions over
        await wait_until(
            lambda: _holds_partitions(second, 0), 60, "the second worker assigned partitions", bus.worker, second
        )
        await wait_until(delivered(0.3), 120, "three tenths delivered", bus.worker, second)
        assert second.stop(signal.SIGTERM) == 0  # leaves: hands them back
        await wait_until(delivered(0.45), 120, "nearly half delivered", bus.worker)

        restarted = second.log_path.stat().st_size
        second.start()
        await wait_until(
            lambda: _holds_partitions(second, restarted),
            60,
            "the second worker assigned partitions again",
            bus.worker,
            second,
        )
        await wait_until(delivered(0.6), 120, "six tenths delivered", bus.worker, second)
        handed_over = list(receiver.events())  # what arrived through the graceful handovers
        bus.worker.stop(signal.SIGKILL)  # the other takes its partitions after the session timeout
        await wait_until(delivered(1.0), 180, "every event delivered", second)
    finally:
        second.stop()
        await bus.stop()
        await receiver.stop()
    sent = {SUB: {r["idempotency_key"] for r in records}}
    counts = count(
        "two workers: one joins, leaves, joins again; the other killed (kill -9)",
        sent,
        {SUB: receiver.events()},
        subject_and_seq,
    ).report()
    assert (counts.lost, counts.wrong, counts.out_of_order) == (0, 0, 0), counts
    # A graceful handover loses no work, so it re-sends nothing behind a later event either.
    handovers = count("handovers", sent, {SUB: handed_over}, subject_and_seq)
    assert (handovers.behind, handovers.out_of_order, handovers.wrong) == (0, 0, 0), handovers


STAGES = ("-ingest", "-router", "-delivery")
SPLIT_PERSONS, SPLIT_MOVES, PARTITIONS = 16, 3, 4


def _stage_partitions(worker: WorkerProcess) -> set[int] | None:
    """The worker's partitions when every stage holds the same ones, some, else None."""
    return _stage_partitions_since(worker, 0) or None


def _split(first: WorkerProcess, second: WorkerProcess) -> bool:
    """Both workers hold the same partitions in all three stages, and share all of them between them."""
    a, b = _stage_partitions(first), _stage_partitions(second)
    return a is not None and b is not None and not a & b and a | b == set(range(PARTITIONS))


def _partition(person: str) -> int:
    """Where the bus puts a person: the pseudonym key's murmur2 (schemas/ingest_key.py), the same in every stage."""
    return (murmur2(pseudonym(person, pseudonym_key()).encode()) & 0x7FFFFFFF) % PARTITIONS


async def test_a_killed_worker_pauses_only_its_own_partitions_and_the_other_delivers_its_own_at_once(
    kafka_bootstrap, tmp_path, monkeypatch
):
    set_tokens(monkeypatch)
    # HTTP ingest keys a person with the worker's pseudonym key, as in production: the same partition in every topic.
    monkeypatch.setenv("SAMBAND_PSEUDONYM_KEY", PSEUDONYM_KEY)
    session = 20.0
    async with operations_bus(kafka_bootstrap, tmp_path, {"SAMBAND_BROKER_SESSION_TIMEOUT": str(int(session))}) as bus:
        second = _another_worker(bus.worker, tmp_path, "worker-2")
        receiver = Receiver(bus.secret)
        await receiver.start()
        persons = _persons()
        try:
            await _subscribe(bus, "split", receiver)
            second.start()
            await wait_until(
                lambda: _split(bus.worker, second),
                90,
                "both workers holding the same partitions in every stage",
                bus.worker,
                second,
            )
            surviving = _stage_partitions(second)
            bus.worker.stop(signal.SIGKILL)
            killed = time.monotonic()
            await _post_moves(bus, "split", persons)
            ours = {
                f"split-{p}-{n}.split"
                for p, person in persons.items()
                if _partition(person) in surviving
                for n in range(SPLIT_MOVES)
            }
            assert 0 < len(ours) < SPLIT_PERSONS * SPLIT_MOVES  # both workers had persons of their own
            await wait_until(lambda: ours <= receiver.unique_ids, 60, "the survivor's persons delivered", second)
            survivor_done = time.monotonic() - killed
            print(
                f"\nthe survivor's persons were delivered {survivor_done:.1f} s after the kill (session timeout {session:.0f} s)"
            )
            await wait_until(
                lambda: _every_move_arrived(receiver),
                120,
                "every person delivered",
                second,
            )
        finally:
            second.stop()
            await receiver.stop()
    # The survivor did not wait for the dead worker's session to time out.
    assert survivor_done < session, (
        f"the survivor's persons took {survivor_done:.1f} s (session timeout {session:.0f} s)"
    )
    _assert_each_move_delivered_in_order(
        "two workers, one killed (kill -9): whole pipeline", "split", persons, receiver
    )


async def test_a_named_worker_killed_and_started_again_takes_its_partitions_back_at_once_a_namesake_is_refused_and_a_stop_hands_over(
    kafka_bootstrap, tmp_path, monkeypatch
):
    """Static membership (SAMBAND_WORKER_NAME). Before, a worker killed and started again joined as
    a new member: the group rebalanced, and the rebalance waited for the dead member's session to
    time out, with every worker's partitions revoked meanwhile (the protocol is eager). Now the
    named worker comes back as the member it was: its own partitions, at once, and the other
    worker is never revoked. A graceful stop still hands its partitions over at once."""
    set_tokens(monkeypatch)
    monkeypatch.setenv("SAMBAND_PSEUDONYM_KEY", PSEUDONYM_KEY)
    session = 40.0
    named = {"SAMBAND_BROKER_SESSION_TIMEOUT": str(int(session)), "SAMBAND_WORKER_NAME": "alpha"}
    async with operations_bus(kafka_bootstrap, tmp_path, named) as bus:
        first = bus.worker
        second = _another_worker(first, tmp_path, "worker-2", SAMBAND_WORKER_NAME="beta")
        receiver = Receiver(bus.secret)
        await receiver.start()
        persons = _persons()
        try:
            await _subscribe(bus, "named", receiver)
            second.start()
            await wait_until(lambda: _split(first, second), 90, "both workers holding their partitions", first, second)
            its_own = _stage_partitions(first)
            # A third worker under the second's name would take its place in every group, and the
            # two would drop each other over and over: it refuses to start, and the two go on.
            namesake = _another_worker(second, tmp_path, "worker-3")
            namesake.start()
            try:
                assert namesake.process is not None
                refused = await asyncio.to_thread(namesake.process.wait, 60)
            finally:
                namesake.stop(signal.SIGKILL)
            assert refused == 2, namesake.log_tail()
            assert "SAMBAND_WORKER_NAME: the name 'beta' is held" in namesake.log_path.read_text(), namesake.log_tail()
            second_since = second.log_path.stat().st_size
            first.stop(signal.SIGKILL)
            killed = time.monotonic()
            first_since = first.log_path.stat().st_size
            first.start()  # the same name, data directory and port: as systemd or Kubernetes would restart it
            await _post_moves(bus, "named", persons)
            await wait_until(
                lambda: _every_move_arrived(receiver),
                120,
                "every person delivered",
                first,
                second,
            )
            all_delivered = time.monotonic() - killed
            taken_back = _stage_partitions_since(first, first_since)
            other_reassigned = _assigned(second, second_since)
            print(
                f"\nevery person delivered {all_delivered:.1f} s after the kill and restart (session timeout {session:.0f} s)"
            )
            # A graceful stop leaves the groups: the other takes every partition without waiting for a session.
            second_since = second.log_path.stat().st_size
            stopping = time.monotonic()
            assert first.stop() == 0
            await wait_until(
                lambda: (
                    _stage_partitions_since(second, second_since) == set(range(PARTITIONS))
                    and _joined_since(second, second_since, bus.app_id)
                ),  # Faust's group (the alert watch's leader)
                2 * session,
                "the other worker holding every partition",
                second,
            )
            handed_over = time.monotonic() - stopping
            print(f"the other worker held every partition {handed_over:.1f} s after the graceful stop")
        finally:
            second.stop()
            await receiver.stop()
    assert taken_back == its_own, (its_own, taken_back)
    assert other_reassigned == {}, f"the other worker was revoked and assigned again: {other_reassigned}"
    assert all_delivered < session, f"delivered {all_delivered:.1f} s after the kill (session timeout {session:.0f} s)"
    assert handed_over < session, f"handed over {handed_over:.1f} s after the stop (session timeout {session:.0f} s)"
    _assert_each_move_delivered_in_order(
        "a named worker killed (kill -9) and started again", "named", persons, receiver
    )


def _another_worker(like: WorkerProcess, tmp_path, name: str, **env: str) -> WorkerProcess:
    """A worker with `like`'s settings (and `env`), its own web port, data directory and log."""
    return WorkerProcess(
        {**like.env, "SAMBAND_WEB_PORT": str(free_port()), "SAMBAND_DATA_DIR": str(tmp_path / f"{name}-data"), **env},
        tmp_path / f"{name}.log",
    )


def _every_move_arrived(receiver: Receiver) -> bool:
    return len(receiver.unique_ids) >= SPLIT_PERSONS * SPLIT_MOVES


def _persons() -> dict[int, str]:
    return {p: synthetic_number(1 + p, 1 + p % 12, 70, 300 + p) for p in range(SPLIT_PERSONS)}


async def _subscribe(bus, sub: str, receiver: Receiver) -> None:
    """A verified subscription `sub` to every person's moves, delivered to `receiver`."""
    await bus.put_subscription(full_subscription(sub, receiver.url, "all", ["Move"], {"Move": ["movedDate"]}))
    await bus.wait_for(receiver, receiver.verified, 60, "verified")


async def _post_moves(bus, sub: str, persons: dict[int, str]) -> None:
    """SPLIT_MOVES moves of each person (ids `<sub>-<p>-<n>`) through HTTP ingest, keyed as in production."""
    async with (
        running_ingest(bus.bootstrap, bus.app_id, ingest_config()) as source,
        aiohttp.ClientSession(f"http://127.0.0.1:{source.port}") as http,
    ):
        for p, person in persons.items():
            events = [cloudevent("Move", id=f"{sub}-{p}-{n}", person=person) for n in range(SPLIT_MOVES)]
            async with http.post(
                "/events", json=events, headers={"Content-Type": "application/cloudevents-batch+json", **auth()}
            ) as response:
                assert response.status == 202, await response.text()


def _assert_each_move_delivered_in_order(what: str, sub: str, persons: dict[int, str], receiver: Receiver) -> None:
    sent = {f"{sub}-{p}-{n}.{sub}" for p in persons for n in range(SPLIT_MOVES)}
    counts = count(
        what,
        {sub: sent},
        {sub: receiver.events()},
        lambda arrival: (arrival.event["id"].split("-")[1], int(arrival.event["id"].split("-")[2])),
    ).report()
    assert (counts.lost, counts.wrong, counts.out_of_order) == (0, 0, 0), counts


def _stage_partitions_since(worker: WorkerProcess, since: int) -> set[int] | None:
    """The partitions every stage was assigned after byte `since` of the worker's log, when the same in all."""
    held = [partitions for group, partitions in _assigned(worker, since).items() if group.endswith(STAGES)]
    return held[0] if len(held) == len(STAGES) and all(h == held[0] for h in held) else None


def _joined_since(worker: WorkerProcess, since: int, group: str) -> bool:
    """The worker joined `group` anew after byte `since` of its log (aiokafka's line)."""
    with worker.log_path.open("rb") as log:
        log.seek(since)
        return f"Joined group '{group}' (generation" in log.read().decode(errors="replace")


async def test_a_named_worker_that_finds_its_name_taken_when_it_comes_back_stops_and_leaves_the_namesake_alone(
    kafka_bootstrap, tmp_path, monkeypatch
):
    """A worker frozen past its session loses its membership; meanwhile a second worker (another
    data directory: another host) starts under the same name, and nothing stops it: nobody holds
    the name. Before, the first one, thawed, joined again under the name and took it back, and the
    two took it from each other over and over, both handling the same partitions. Now the first
    one sees another process holding its name and stops (exit non-zero); the second delivers every
    event, in order."""
    set_tokens(monkeypatch)
    monkeypatch.setenv("SAMBAND_PSEUDONYM_KEY", PSEUDONYM_KEY)
    named = {"SAMBAND_BROKER_SESSION_TIMEOUT": "10", "SAMBAND_WORKER_NAME": "alpha"}
    async with operations_bus(kafka_bootstrap, tmp_path, named) as bus:
        first = bus.worker
        namesake = _another_worker(first, tmp_path, "namesake")  # its own data directory: as on another host
        receiver = Receiver(bus.secret)
        await receiver.start()
        persons = _persons()
        try:
            await _subscribe(bus, "taken", receiver)
            assert first.process is not None
            first.process.send_signal(signal.SIGSTOP)
            try:
                # (each poll asks the broker)
                await until(
                    lambda: _nobody_named(bus, "alpha"), 60, every=0.5, what="the frozen worker's membership ended"
                )
                namesake.start()
                await wait_until(
                    lambda: _stage_partitions(namesake) == set(range(PARTITIONS)),
                    90,
                    "the namesake holding all",
                    namesake,
                )
            finally:
                first.process.send_signal(signal.SIGCONT)
            exit_code = await asyncio.to_thread(first.process.wait, 90)
            await _post_moves(bus, "taken", persons)
            await wait_until(
                lambda: _every_move_arrived(receiver),
                120,
                "every person delivered by the namesake",
                namesake,
            )
        finally:
            namesake.stop()
            await receiver.stop()
    assert exit_code != 0, first.log_tail()
    assert '"stage.worker_name_taken"' in first.log_path.read_text(), first.log_tail()
    _assert_each_move_delivered_in_order(
        "a namesake started while a named worker was frozen", "taken", persons, receiver
    )


async def _nobody_named(bus, name: str) -> bool:
    """No member of the stages' groups holds `name`."""
    async with KafkaInspector(bus.bootstrap) as kafka:
        members = await kafka.group_members([f"{bus.app_id}{stage}" for stage in STAGES])
    return all(member.instance != name for member in members)
