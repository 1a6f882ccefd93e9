"""`samband worker --processes N` (agents/processes.py, issue 20): N processes on one host, each with
its own partitions, the same in every stage; one supervisor that stops them together.

Against the session's broker, through the CLI and HTTP: the whole pipeline (HTTP ingest, routing,
webhook delivery) on a worker of two processes delivers every event, in order per person; `samband
status` names both processes and the partitions each holds; each serves its own web port; a stop
signal stops both, and a kill -9 of the worker leaves no process behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from bus_settings import PSEUDONYM_KEY
from support import free_port_run
from webhook_receiver import VALIDATION_TYPE, Receiver, Reply

from agents.commands.status import StatusOptions, workers_section
from agents.processes import process_count, usable_cores
from bus.inspector import GroupMember
from tests.connectors.http_ingest_client import auth, cloudevent, ingest_config, running_ingest, set_tokens
from tests.faults.fault_counts import count
from tests.operations.ops_bus import full_subscription, operations_bus
from tests.routing.routing_events import synthetic_number

PERSONS, MOVES = 24, 3


def test_the_count_is_the_one_asked_for_else_one_per_usable_core_and_never_more_than_the_partitions():
    assert process_count(None, partitions=12, cores=8) == 8
    assert process_count(None, partitions=4, cores=8) == 4  # a process without a partition would only wait
    assert process_count(3, partitions=12, cores=8) == 3
    assert process_count(16, partitions=12, cores=8) == 12


def test_usable_cores_follow_the_cpu_quota_of_the_processs_own_cgroup_and_those_above_it(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    membership = tmp_path / "proc-self-cgroup"
    root = tmp_path / "cgroup"
    unit = root / "system.slice" / "samband.service"  # cgroup v2, a systemd unit with CPUQuota=100%
    unit.mkdir(parents=True)
    membership.write_text("0::/system.slice/samband.service\n")
    (unit / "cpu.max").write_text("100000 100000\n")
    assert usable_cores(root, membership) == 1
    (unit / "cpu.max").write_text("max 100000\n")
    assert usable_cores(root, membership) == affinity
    (root / "system.slice" / "cpu.max").write_text("50000 100000\n")  # a limit on the slice above it
    assert usable_cores(root, membership) == 1
    (root / "system.slice" / "cpu.max").unlink()
    membership.write_text("0::/\n")  # a container: its own group is the root it sees
    (root / "cpu.max").write_text("100000 100000\n")
    assert usable_cores(root, membership) == 1
    (root / "cpu.max").unlink()
    v1 = root / "cpu" / "docker" / "abc"  # cgroup v1: microseconds per period
    v1.mkdir(parents=True)
    membership.write_text("4:cpu,cpuacct:/docker/abc\n2:memory:/docker/abc\n")
    (v1 / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cores(root, membership) == 1
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert usable_cores(root, membership) == affinity
    assert usable_cores(tmp_path / "absent", tmp_path / "absent-too") == affinity


def test_a_process_count_below_one_is_refused_with_exit_code_2_saying_so():
    for text in ("0", "x"):
        done = subprocess.run(
            [sys.executable, "-m", "agents.cli", "worker", "--processes", text], capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert done.returncode == 2
        assert f"expected a number of processes, 1 or more, got {text}" in done.stderr


def test_a_web_port_that_leaves_no_room_for_every_process_is_refused_with_exit_code_2_saying_so():
    env = {**os.environ, "SAMBAND_WEB_PORT": "65535"}
    done = subprocess.run(
        [sys.executable, "-m", "agents.cli", "worker", "--processes", "2"], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "SAMBAND_WEB_PORT=65535 leaves no port for process 1" in done.stderr


async def test_the_workers_section_shows_each_process_once_with_every_partition_it_holds():
    class Inspector:
        async def groups(self, prefix):
            return ["app-ingest", "app-router", "app-delivery"]

        async def group_members(self, groups):
            return [
                GroupMember("app-ingest", "samband-a-1-ab12", "/10.0.0.1", {"app-ingest": [0, 1]}, "alpha"),
                GroupMember("app-router", "samband-a-1-ab12", "/10.0.0.1", {"app-events": [0, 1]}, "alpha"),
                # the same client id on another host: another process
                GroupMember("app-ingest", "samband-a-1-ab12", "/10.0.0.2", {"app-ingest": [2, 3]}),
            ]

    section = await workers_section(Inspector(), StatusOptions("app", None, 0))
    assert section.data == [
        {"process": "samband-a-1-ab12", "host": "/10.0.0.1", "name": "alpha", "ingest": [0, 1], "route": [0, 1]},
        {"process": "samband-a-1-ab12", "host": "/10.0.0.2", "name": None, "ingest": [2, 3]},
    ]
    assert "0-1" in section.text and "2-3" in section.text
    named, unnamed = section.text.splitlines()[1:]
    assert named.split()[2] == "alpha" and unnamed.split()[2] == "-"  # SAMBAND_WORKER_NAME, or none


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def _has_children(pid: int, count: int) -> bool:
    return len(_children(pid)) >= count


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited


async def _until(condition, timeout: float, what: str, log: Path) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"not {what} within {timeout:.0f} s:\n{_tail(log)}"
        await asyncio.sleep(0.2)  # poll interval inside the deadline


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.exists() else ""


async def _ready(http: aiohttp.ClientSession, port: int) -> bool:
    try:
        async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


def _status_workers(env: dict[str, str]) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "agents.cli", "status", "--json", "--interval", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        return json.loads(done.stdout).get("workers") or []  # not shown (null) or no output: none seen yet
    except json.JSONDecodeError:
        return []


async def test_a_worker_of_two_processes_splits_the_partitions_and_delivers_every_event_in_order(
    kafka_bootstrap, tmp_path, monkeypatch
):
    set_tokens(monkeypatch)
    monkeypatch.setenv("SAMBAND_PSEUDONYM_KEY", PSEUDONYM_KEY)  # HTTP ingest keys persons as the worker does
    port = free_port_run(2)
    settings = {"SAMBAND_WORKER_PROCESSES": "2", "SAMBAND_WEB_PORT": str(port)}
    async with operations_bus(kafka_bootstrap, tmp_path, settings) as bus, aiohttp.ClientSession() as http:
        supervisor = bus.worker.process.pid
        receiver = Receiver(bus.secret)
        await receiver.start()
        persons = {p: synthetic_number(1 + p, 1 + p % 12, 70, 400 + p) for p in range(PERSONS)}
        try:
            await _until(
                lambda: _both_ready(http, port), 120, "both processes ready on their ports", bus.worker.log_path
            )
            children = _children(supervisor)
            assert len(children) == 2
            await bus.put_subscription(full_subscription("two", receiver.url, "all", ["Move"], {"Move": ["movedDate"]}))
            await bus.wait_for(receiver, receiver.verified, 60, "verified")

            async def split() -> bool:
                rows = await asyncio.to_thread(_status_workers, bus.worker.env)
                held = [set(row.get("ingest", [])) for row in rows]
                return (
                    len(rows) == 2
                    # status names each process: its pid, and its index (it serves on port + index)
                    and {int(row["process"].split("-")[-3]) for row in rows} == set(children)
                    and {row["process"].split("-")[-1] for row in rows} == {"p0", "p1"}
                    and all(row.get("ingest") == row.get("route") == row.get("deliver") for row in rows)
                    and not held[0] & held[1]
                    and held[0] | held[1] == {0, 1, 2, 3}
                )

            await _until(split, 90, "two processes holding the same partitions in every stage", bus.worker.log_path)
            async with running_ingest(bus.bootstrap, bus.app_id, ingest_config()) as source:
                await _post_moves(http, source.port, "two", persons, MOVES)

                async def delivered() -> bool:
                    return len(receiver.unique_ids) >= PERSONS * MOVES

                await _until(delivered, 120, "every event delivered", bus.worker.log_path)
            assert bus.worker.stop(signal.SIGTERM) == 0
            assert not any(_running(child) for child in children)
        finally:
            await receiver.stop()
    counts = count(
        "a worker of two processes",
        {"two": {f"two-{p}-{n}.two" for p in persons for n in range(MOVES)}},
        {"two": receiver.events()},
        lambda arrival: (arrival.event["id"].split("-")[1], int(arrival.event["id"].split("-")[2])),
    ).report()
    assert (counts.lost, counts.wrong, counts.out_of_order) == (0, 0, 0), counts


async def _post_moves(http: aiohttp.ClientSession, port: int, tag: str, persons: dict[int, str], moves: int) -> None:
    """Each person's `moves` Moves through HTTP ingest, ids `<tag>-<person>-<n>`, one batch per round."""
    for n in range(moves):
        events = [cloudevent("Move", id=f"{tag}-{p}-{n}", person=person) for p, person in persons.items()]
        async with http.post(
            f"http://127.0.0.1:{port}/events",
            json=events,
            headers={"Content-Type": "application/cloudevents-batch+json", **auth()},
        ) as response:
            assert response.status == 202, await response.text()


async def _both_ready(http: aiohttp.ClientSession, port: int) -> bool:
    return await _ready(http, port) and await _ready(http, port + 1)


def _start(env: dict[str, str], tmp_path: Path, log: Path) -> subprocess.Popen:
    """`samband worker` started as an operator would, from a folder holding a package named like the
    bus's: its processes must run the installed code, never what lies in the working directory."""
    planted = tmp_path / "cwd" / "agents"
    planted.mkdir(parents=True)
    (planted / "__init__.py").write_text("")
    (planted / "cli.py").write_text(f"open({str(tmp_path / 'planted-ran')!r}, 'w').close()\n")
    samband = Path(sys.executable).parent / "samband"
    with log.open("ab") as out:
        return subprocess.Popen([samband, "worker"], env=env, cwd=planted.parent, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.parametrize("killed", ["the worker", "one of its processes"])
async def test_a_kill_leaves_no_process_behind(killed, kafka_bootstrap, worker_env, tmp_path):
    port = free_port_run(2)
    log = tmp_path / "worker.log"
    worker = _start({**worker_env, "SAMBAND_WORKER_PROCESSES": "2", "SAMBAND_WEB_PORT": str(port)}, tmp_path, log)
    try:
        async with aiohttp.ClientSession() as http:
            await _until(lambda: _both_ready(http, port), 120, "both processes ready", log)
        assert not (tmp_path / "planted-ran").exists()
        children = _children(worker.pid)
        assert len(children) == 2
        if killed == "the worker":
            worker.kill()
            assert worker.wait(30) == -signal.SIGKILL
        else:  # a process that dies stops the worker, non-zero, so whoever runs it starts it again whole
            os.kill(children[0], signal.SIGKILL)
            assert worker.wait(90) == 128 + signal.SIGKILL, _tail(log)

        async def all_gone() -> bool:
            return not any(_running(child) for child in children)

        await _until(all_gone, 30, "every process gone", log)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


async def test_a_worker_stopped_while_its_processes_start_exits_0_and_leaves_none(
    kafka_bootstrap, worker_env, tmp_path
):
    log = tmp_path / "worker.log"
    env = {**worker_env, "SAMBAND_WORKER_PROCESSES": "2", "SAMBAND_WEB_PORT": str(free_port_run(2))}
    worker = _start(env, tmp_path, log)
    try:
        await _until(lambda: _has_children(worker.pid, 2), 60, "both processes started", log)
        children = _children(worker.pid)
        worker.send_signal(signal.SIGTERM)  # before either has set up its own stop, or while it starts
        assert worker.wait(120) == 0, _tail(log)
        assert not any(_running(child) for child in children)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


async def test_a_worker_of_two_processes_killed_mid_stream_loses_nothing_and_keeps_each_persons_order(
    kafka_bootstrap, tmp_path, monkeypatch
):
    set_tokens(monkeypatch)
    monkeypatch.setenv("SAMBAND_PSEUDONYM_KEY", PSEUDONYM_KEY)
    port = free_port_run(2)
    # A short session: the killed processes' members leave the groups soon, and the new ones take over.
    settings = {"SAMBAND_WORKER_PROCESSES": "2", "SAMBAND_WEB_PORT": str(port), "SAMBAND_BROKER_SESSION_TIMEOUT": "8"}
    persons = {p: synthetic_number(1 + p, 1 + p % 12, 72, 500 + p) for p in range(PERSONS)}
    moves = 8
    async with operations_bus(kafka_bootstrap, tmp_path, settings) as bus, aiohttp.ClientSession() as http:
        # Each answer takes 20 ms, so the kill comes while deliveries are on their way.
        receiver = Receiver(bus.secret, lambda _n, e: Reply(delay=0.02) if e["type"] != VALIDATION_TYPE else Reply())
        await receiver.start()
        try:
            await _until(lambda: _both_ready(http, port), 120, "both processes ready", bus.worker.log_path)
            await bus.put_subscription(
                full_subscription("crash", receiver.url, "all", ["Move"], {"Move": ["movedDate"]}, max_concurrency=2)
            )
            await bus.wait_for(receiver, receiver.verified, 60, "verified")
            async with running_ingest(bus.bootstrap, bus.app_id, ingest_config()) as source:
                await _post_moves(http, source.port, "crash", persons, moves)

                async def some_delivered() -> bool:
                    return len(receiver.unique_ids) >= PERSONS * moves // 4

                await _until(some_delivered, 120, "a quarter delivered", bus.worker.log_path)
                children = _children(bus.worker.process.pid)
                bus.worker.stop(signal.SIGKILL)  # the worker and, with it, both processes, mid-stream
                assert len(receiver.unique_ids) < PERSONS * moves  # (mid-stream indeed)

                async def gone() -> bool:
                    return not any(_running(child) for child in children)

                await _until(gone, 30, "both processes gone", bus.worker.log_path)
                bus.worker.start()  # again, from the last commits

                async def delivered() -> bool:
                    return len(receiver.unique_ids) >= PERSONS * moves

                await _until(delivered, 180, "every event delivered", bus.worker.log_path)
        finally:
            await receiver.stop()
    counts = count(
        "a worker of two processes killed mid-stream (kill -9) and started again",
        {"crash": {f"crash-{p}-{n}.crash" for p in persons for n in range(moves)}},
        {"crash": receiver.events()},
        lambda arrival: (arrival.event["id"].split("-")[1], int(arrival.event["id"].split("-")[2])),
    ).report()
    assert (counts.lost, counts.wrong, counts.out_of_order) == (0, 0, 0), counts
