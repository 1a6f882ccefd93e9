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
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

PROCESS_INDEX_VARIABLE = "SAMBAND_WORKER_PROCESS_INDEX"  # set in a child: which one it is
_PR_SET_PDEATHSIG = 1  # prctl(2)


def usable_cores(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may use: its CPU affinity, lowered by a cgroup v2 CPU quota (a
    container's CPU limit, which the affinity does not show), rounded up."""
    cores = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        quota, period = cgroup_cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    return max(1, cores)


def process_count(requested: int | None, partitions: int, cores: int | None = None) -> int:
    """How many worker processes to run: `requested` (None: one per usable core), at most one per partition."""
    wanted = requested if requested is not None else (cores or usable_cores())
    return max(1, min(wanted, partitions))


_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}  # a stop, or a child that ended


def _die_with_parent() -> None:
    """In a child, before it runs: its own process group, SIGKILL when the supervisor dies, and
    the signals the supervisor waits for unblocked again."""
    os.setpgid(0, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)


def supervise(count: int, worker_args: list[str], web_port: int, stop_timeout: float) -> int:
    """Run `count` children `samband worker <worker_args>` until a stop signal or a child's exit;
    returns the exit code for the supervisor."""
    # Blocked, then waited for: a signal that comes at any moment, even before a child is started, is seen.
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    children: list[subprocess.Popen] = []
    for index in range(count):
        env = {
            **os.environ,
            PROCESS_INDEX_VARIABLE: str(index),
            "SAMBAND_WEB_PORT": str(web_port + index if web_port else 0),
        }
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "agents.cli", "worker", "--processes", "1", *worker_args],
                env=env,
                preexec_fn=_die_with_parent,
            )
        )
    log.info("worker.processes_started", processes=count, pids=[child.pid for child in children])
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
    stop timeout (which makes them exit by themselves)."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + stop_timeout + 15
    codes = []
    for child in children:
        try:
            codes.append(child.wait(max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            child.kill()
            codes.append(child.wait())
    return [_shell_code(code) for code in codes]


def _shell_code(code: int) -> int:
    """Popen's exit code as a shell gives it: killed by signal s (Popen's -s) is 128 + s."""
    return code if code >= 0 else 128 - code
