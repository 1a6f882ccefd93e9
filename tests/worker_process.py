"""Run `samband worker` as a real subprocess, as operations would, and wait on Kafka-side conditions."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agents.cli", "worker"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal the worker and wait for it to exit; SIGKILL if it does not within the timeout."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                # mode's worker writes every thread's and task's stack on SIGUSR1: where it hangs.
                self.process.send_signal(signal.SIGUSR1)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(3)
                self.process.kill()
                self.process.wait()
                raise AssertionError(
                    f"worker ignored signal {sig} for {timeout:.0f} s; log: {self.log_path}\n{self.log_tail(120)}"
                ) from None
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


async def committed_total(bootstrap: str, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return sum(meta.offset for meta in offsets.values() if meta.offset > 0)
    except GroupCoordinatorNotAvailableError:  # a new broker makes __consumer_offsets on first use: none yet
        return 0
    finally:
        await admin.close()


async def wait_for_commits(bootstrap: str, group: str, total: int, timeout: float, worker: WorkerProcess) -> None:
    """Wait until the group has committed `total` offsets in all (offsets start at 0, so that is the count read)."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = -1
    while asyncio.get_running_loop().time() < deadline:
        last = await committed_total(bootstrap, group)
        if last >= total:
            return
        if worker.process is not None and worker.process.poll() is not None:
            raise AssertionError(f"worker exited ({worker.process.returncode}) early:\n{worker.log_tail()}")
        await asyncio.sleep(0.2)  # poll interval, not a wait for an outcome
    raise AssertionError(f"group {group} committed {last} of {total} within {timeout:.0f} s:\n{worker.log_tail()}")


async def wait_until(condition, timeout: float, what: str, *workers: WorkerProcess) -> None:
    """Until `condition()` holds, failing at once (with its log) if one of `workers` has exited."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        for worker in workers:
            assert worker.process is not None and worker.process.poll() is None, (
                f"a worker exited while waiting for {what}:\n{worker.log_tail()}"
            )
        assert asyncio.get_running_loop().time() < deadline, f"not {what} within {timeout:.0f} s"
        await asyncio.sleep(0.1)  # poll interval inside the deadline
