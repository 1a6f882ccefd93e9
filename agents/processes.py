"""`samband worker --processes N`: one worker per core, on one host, sharing nothing but Kafka.

A worker is one Python process, and the stages' work is Python: one process uses one core. With
N processes each is a member of the stages' consumer groups like a worker on another host, so
each holds its own partitions, the same ones in every stage (bus/assignor.py), and Kafka moves
them when one comes or goes. N defaults to the cores this process may use (its CPU affinity,
and a container's CPU quota), bounded by the partition count: a process without a partition
would only wait.

The process started as `samband worker` supervises its children and runs no stage itself:
- child i serves its web endpoints (health, readiness, metrics, API, dashboard) on
  SAMBAND_WEB_PORT + i, so each process's health and metrics can be read;
- a stop signal (SIGTERM, SIGINT) is passed on to every child, and the supervisor exits when they
  have: 0 when every child stopped cleanly, else the highest exit code;
- a child that exits by itself (a stage that died, a port taken) stops the others, and the
  supervisor exits non-zero, so whoever runs the worker restarts it whole;
- each child is in a process group of its own (a Ctrl-C reaches the supervisor alone, which
  stops the children in order) and is killed by the kernel if the supervisor dies, so a kill -9
  of the worker leaves no process behind, as with one process.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import structlog

from agents.config import SettingsError

log = structlog.get_logger(__name__)

# Set in a child: which one it is (bus/batches.py puts it in the process's client id).
PROCESS_INDEX_VARIABLE = "SAMBAND_WORKER_PROCESS_INDEX"
_PR_SET_PDEATHSIG = 1  # prctl(2)


CGROUP = Path("/sys/fs/cgroup")
MEMBERSHIP = Path("/proc/self/cgroup")


def usable_cores(cgroup: Path = CGROUP, membership: Path = MEMBERSHIP) -> int:
    """The cores this process may use: its CPU affinity, lowered by the CPU quotas of its cgroup and
    the groups above it (a container's CPU limit, systemd's CPUQuota=: the affinity shows neither;
    cgroup v2 or v1), rounded up. Memory limits are not looked at: each process needs its own
    (docs/deploy.md)."""
    cores = len(os.sched_getaffinity(0))
    for quota in _cpu_quotas(cgroup, membership):
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _cpu_quotas(cgroup: Path, membership: Path) -> Iterator[float]:
    """CPUs' worth of time each limited group from this process's own up to the root may use.
    `membership` (/proc/self/cgroup) names the group: `0::/system.slice/x.service` (v2), or
    `4:cpu,cpuacct:/docker/...` (v1); in a container it is usually `/`, the container's own."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        lines = []
    v2 = next((line.split(":", 2)[2] for line in lines if line.startswith("0::")), "/")
    for group in _up_from(cgroup, v2):
        with contextlib.suppress(OSError, ValueError):
            quota, period = (group / "cpu.max").read_text().split()[:2]  # "max 100000" or "150000 100000"
            if quota != "max":
                yield int(quota) / int(period)
    v1 = (
        next((line.split(":", 2)[2] for line in lines if "cpu" in line.split(":", 2)[1].split(",")), "/")
        if lines
        else "/"
    )
    for group in _up_from(cgroup / "cpu", v1):
        with contextlib.suppress(OSError, ValueError):
            quota_us = int((group / "cpu.cfs_quota_us").read_text())  # -1 when unlimited
            if quota_us > 0:
                yield quota_us / int((group / "cpu.cfs_period_us").read_text())


def _up_from(root: Path, group: str) -> list[Path]:
    """The folder of `group` under `root`, and each folder above it up to `root`."""
    folder = root / group.strip("/")
    return [folder, *[parent for parent in folder.parents if parent.is_relative_to(root)]]


def process_count(requested: int | None, partitions: int, cores: int | None = None) -> int:
    """How many worker processes to run: `requested` (None: one per usable core), at most one per partition."""
    wanted = requested if requested is not None else (cores or usable_cores())
    return max(1, min(wanted, partitions))


_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}  # a stop, or a child that ended


def _die_with_parent(libc: ctypes.CDLL, supervisor: int) -> None:
    """In a child, before it runs: its own process group, SIGKILL when the supervisor dies, and
    the signals the supervisor waits for unblocked again. A supervisor that died before the
    child asked for that signal is seen as a new parent: the child then exits at once."""
    os.setpgid(0, 0)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != supervisor:
        os._exit(1)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)


class ProcessesError(SettingsError):
    """The processes cannot be started as asked; the message says what to change."""


def check_ports(count: int, web_port: int) -> None:
    """Process i serves on web_port + i: the last one must be a port."""
    if web_port and web_port + count - 1 > 65535:
        raise ProcessesError(
            f"SAMBAND_WEB_PORT={web_port} leaves no port for process {count - 1} (port + {count - 1} is above "
            "65535): choose a lower port, or fewer processes"
        )


def supervise(count: int, worker_args: list[str], web_port: int, stop_timeout: float) -> int:
    """Run `count` children `samband worker <worker_args>` until a stop signal or a child's exit;
    returns the exit code for the supervisor."""
    check_ports(count, web_port)
    # Blocked, then waited for: a signal that comes at any moment, even before a child is started, is seen.
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here, not in the forked child
    supervisor = os.getpid()
    children: list[subprocess.Popen] = []
    for index in range(count):
        env = {
            **os.environ,
            PROCESS_INDEX_VARIABLE: str(index),
            "SAMBAND_WEB_PORT": str(web_port + index if web_port else 0),
        }
        children.append(
            subprocess.Popen(
                # -P: the installed package, never an agents/ in the working directory.
                [sys.executable, "-P", "-m", "agents.cli", "worker", "--processes", "1", *worker_args],
                env=env,
                preexec_fn=lambda: _die_with_parent(libc, supervisor),
            )
        )
    log.info(
        "worker.processes_started",
        processes=count,
        pids=[child.pid for child in children],
        web_ports=[web_port + index for index in range(count)] if web_port else "any",
    )
    ended: tuple[int, int] | None = None  # (index, exit code) of the first child that exited unasked
    while ended is None:
        ended = next(((i, code) for i, child in enumerate(children) if (code := child.poll()) is not None), None)
        if ended is None and signal.sigwaitinfo(_SIGNALS).si_signo != signal.SIGCHLD:
            break  # asked to stop
    if ended is not None:
        log.error("worker.process_exited", process=ended[0], exit_code=ended[1], processes=count)
    codes = _stop_all(children, stop_timeout)
    if ended is not None:
        return _shell_code(ended[1]) or 1  # a child that ends unasked is a failure, even with 0
    return max(codes)


def _stop_all(children: list[subprocess.Popen], stop_timeout: float) -> list[int]:
    """SIGTERM to every child still running; SIGKILL to those still running well after their own
    stop timeout (which makes them exit by themselves). A child ended by the SIGTERM itself (asked
    to stop before it had set up its own stop) stopped as asked: 0."""
    asked = set()
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            asked.add(child.pid)
    deadline = time.monotonic() + stop_timeout + 15
    codes = []
    for child in children:
        try:
            code = child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            code = child.wait()
        codes.append(0 if code == -signal.SIGTERM and child.pid in asked else _shell_code(code))
    return codes


def _shell_code(code: int) -> int:
    """Popen's exit code as a shell gives it: killed by signal s (Popen's -s) is 128 + s."""
    return code if code >= 0 else 128 - code
