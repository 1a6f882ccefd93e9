"""The local broker launcher: idempotent up/down, stale pid files, clear errors, no stray JVMs.

These tests run a second broker on their own ports and state directory, so the session's
broker is untouched.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from kafka_io import KafkaWaitTimeout, consume, produce
from support import free_port

from deploy import launcher

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(
        launcher.external_bootstrap_servers() is not None,
        reason="KAFKA_BOOTSTRAP_SERVERS set: the launcher starts nothing",
    ),
]


@pytest.fixture
def own_broker(tmp_path) -> launcher.BrokerConfig:
    config = replace(
        launcher.BrokerConfig.from_env(), port=free_port(), controller_port=free_port(), state_dir=tmp_path / "kafka"
    )
    yield config
    launcher.down(config)


def broker_processes(config: launcher.BrokerConfig) -> list[str]:
    """Pids of Java processes started with this broker's properties file."""
    found = subprocess.run(["pgrep", "-f", f"{launcher.MAIN_CLASS} {config.state_dir}"], capture_output=True, text=True)
    return found.stdout.split()


def samband(config: launcher.BrokerConfig, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "SAMBAND_KAFKA_PORT": str(config.port),
        "SAMBAND_KAFKA_CONTROLLER_PORT": str(config.controller_port),
        "SAMBAND_KAFKA_STATE_DIR": str(config.state_dir),
        "SAMBAND_KAFKA_JAR_CACHE": str(config.jar_cache),
    }
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args], env=env, capture_output=True, text=True, timeout=180
    )


def test_two_ups_then_two_downs_leave_no_java_process(own_broker):
    first, second = samband(own_broker, "kafka", "up"), samband(own_broker, "kafka", "up")
    assert first.returncode == 0, first.stderr
    assert "started" in first.stdout
    assert second.returncode == 0 and "already up" in second.stdout
    assert len(broker_processes(own_broker)) == 1
    assert samband(own_broker, "kafka", "status").returncode == 0

    down1, down2 = samband(own_broker, "kafka", "down"), samband(own_broker, "kafka", "down")
    assert (down1.returncode, down2.returncode) == (0, 0)
    assert "broker stopped" in down1.stdout and "not running" in down2.stdout
    assert broker_processes(own_broker) == []
    assert samband(own_broker, "kafka", "status").returncode == 1


def test_stale_pid_file_is_replaced_by_a_fresh_start(own_broker):
    own_broker.state_dir.mkdir(parents=True)
    own_broker.pid_file.write_text("999999\n")  # no such process

    state = launcher.up(own_broker)

    assert state.running and state.pid != 999999
    assert own_broker.pid_file.read_text().strip() == str(state.pid)


def test_up_on_a_taken_port_names_the_port_and_the_setting(own_broker):
    import socket

    with socket.socket() as blocker:
        blocker.bind((own_broker.host, own_broker.port))
        blocker.listen()
        with pytest.raises(launcher.LauncherError, match=rf"port {own_broker.port} .*SAMBAND_KAFKA_PORT"):
            launcher.up(own_broker)


def test_missing_java_is_one_clear_line(own_broker, tmp_path):
    # A PATH with Maven but without Java: jars resolve from the cache, then starting needs java.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mvn").symlink_to("/usr/bin/mvn")
    result = samband(own_broker, "kafka", "up", path=str(bin_dir))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "java not found: install Java 17" in result.stderr


def test_missing_maven_is_one_clear_line_when_jars_are_not_cached(own_broker, tmp_path):
    config = replace(own_broker, jar_cache=tmp_path / "empty-cache")
    result = samband(config, "kafka", "up", path=str(tmp_path))  # an empty PATH: no mvn, no java
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "samband: mvn not found: install Maven (e.g. `apt-get install maven`) to fetch the Kafka jars"
    )


def test_cached_jars_need_no_maven(own_broker, monkeypatch):
    launcher.ensure_jars(own_broker)
    monkeypatch.setenv("PATH", "/nonexistent")  # mvn cannot run: a second fetch would fail loudly
    assert launcher.ensure_jars(own_broker) == own_broker.jar_dir
    assert any(own_broker.jar_dir.glob("kafka_2.13-3.9.*.jar"))
    assert any(own_broker.jar_dir.glob("slf4j-reload4j-*.jar"))


def test_failed_start_shows_the_broker_log(own_broker):
    own_broker.state_dir.mkdir(parents=True)
    bad = replace(own_broker, start_timeout=60)
    # Storage formatted for another node id makes the broker exit at start.
    (bad.data_dir).mkdir()
    (bad.data_dir / "meta.properties").write_text("version=1\nnode.id=7\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\n")
    with pytest.raises(launcher.LauncherError) as failure:
        launcher.up(bad)
    message = str(failure.value)
    assert "exited during start" in message and "Last lines of" in message
    assert "Stored node id 7" in message  # the broker's own complaint, from its log
    assert broker_processes(bad) == []


async def test_stopped_broker_fails_a_waiting_client_clearly_and_in_time(own_broker):
    state = await asyncio.to_thread(launcher.up, own_broker)
    await produce(state.bootstrap_servers, "waiting-client", [b"one"])
    got_first = asyncio.Event()
    waiting = asyncio.create_task(
        consume(state.bootstrap_servers, "waiting-client", 2, timeout=10, got_first=got_first)
    )
    await asyncio.wait_for(got_first.wait(), 30)  # the client now waits for a second record

    started = time.monotonic()
    await asyncio.to_thread(launcher.down, own_broker)

    with pytest.raises(KafkaWaitTimeout, match=r"got 1; is the broker up"):
        await waiting
    assert time.monotonic() - started < 20


def test_a_session_broker_starts_empty_and_leaves_nothing_behind():
    # The suite once reused the developer's broker and its state: each run's ~1,900 partitions piled up.
    import session_broker
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def topics(bootstrap: str, create: str | None = None) -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            if create:
                await admin.create_topics([NewTopic(create, num_partitions=1, replication_factor=1)])
            return set(await admin.list_topics())
        finally:
            await admin.close()

    first = session_broker.start()
    try:
        assert first.bootstrap_servers != launcher.BrokerConfig.from_env().bootstrap_servers
        assert "left-by-an-earlier-session" in asyncio.run(
            topics(first.bootstrap_servers, create="left-by-an-earlier-session")
        )
    finally:
        session_broker.stop(first)
    assert not first.state_dir.exists()
    assert broker_processes(first) == []

    second = session_broker.start()
    try:
        assert second.state_dir != first.state_dir
        assert "left-by-an-earlier-session" not in asyncio.run(topics(second.bootstrap_servers))
    finally:
        session_broker.stop(second)
