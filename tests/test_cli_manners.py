"""Issue 18, CLI manners: a one-shot command prints only its own lines (the Kafka client's log
lines only with --verbose) and answers an unreachable Kafka with one line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support import free_port


def _samband(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}  # nothing listens there
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("command", [["dlq", "list"], ["trace", "some-event-id"]])
def test_an_unreachable_kafka_is_one_line_and_exit_2_not_a_traceback(command):
    done = _samband(*command)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("samband: Kafka failed"), done.stderr
    assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr and "{" not in done.stderr


def test_verbose_shows_the_kafka_clients_own_lines():
    done = _samband("--verbose", "trace", "some-event-id")
    assert done.returncode == 2
    assert "Unable connect to" in done.stderr or "Unable to bootstrap" in done.stderr, done.stderr


def test_a_read_that_times_out_is_one_line_and_exit_2(monkeypatch, capsys):
    """Found in review: a topic read that stopped answering (bus.reading's TimeoutError) ended the
    command with a traceback."""
    from agents import cli
    from agents.commands import dlq

    async def stalls(*_args, **_kwargs):
        raise TimeoutError("no record within the read timeout")

    monkeypatch.setattr(dlq, "list_dead_letters", stalls)
    monkeypatch.setenv("SAMBAND_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    assert cli.main(["dlq", "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("samband: Kafka failed (TimeoutError)"), err
