"""Who holds a named worker's name (agents/worker_name.py): its own killed predecessor or another worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from agents.worker_name import _own_dead_predecessor
from bus.inspector import GroupMember


def member(host: str, pid: int) -> GroupMember:
    return GroupMember("samband-router", f"samband-{host}-{pid}-ab12-p0", host, {}, "alpha-p0")


@pytest.fixture
def exited_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_process_of_this_host_that_has_exited_is_the_workers_own_predecessor(exited_pid):
    assert _own_dead_predecessor(member(socket.gethostname(), exited_pid))


def test_a_running_worker_of_this_host_holds_the_name():
    worker = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "agents.cli", "worker"],
                              stdin=subprocess.PIPE)  # fmt: skip
    try:
        assert not _own_dead_predecessor(member(socket.gethostname(), worker.pid))
    finally:
        worker.communicate(b"")


def test_a_pid_taken_since_by_another_program_is_a_predecessor():
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert _own_dead_predecessor(member(socket.gethostname(), other.pid))
    finally:
        other.communicate(b"")


def test_this_very_process_is_a_predecessor_in_a_container_restarted_with_the_same_pid():
    assert _own_dead_predecessor(member(socket.gethostname(), os.getpid()))


def test_a_member_on_another_host_may_be_alive_and_holds_the_name(exited_pid):
    assert not _own_dead_predecessor(member(socket.gethostname() + "-elsewhere", exited_pid))


def test_a_member_that_is_not_a_samband_process_holds_the_name():
    assert not _own_dead_predecessor(GroupMember("g", "rdkafka", socket.gethostname(), {}, "alpha-p0"))
