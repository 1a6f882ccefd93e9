"""The processes the demo starts, and stopping exactly those: the broker (only if it was not
running), one `samband worker` and one feed source connector (`samband connectors run`).

Each child runs in its own process group, logs to a file in the run directory (the bus's
logs are redacted by agents/logging.py) and is stopped with SIGTERM, then SIGKILL after a
grace period, so a run never leaves a process behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from deploy import launcher


@dataclass
class Broker:
    bootstrap: str
    started_here: bool
    config: launcher.BrokerConfig | None = None

    @classmethod
    def ensure(cls) -> Broker:
        """The cluster in KAFKA_BOOTSTRAP_SERVERS, else the local broker, started if it is not running."""
        if external := launcher.external_bootstrap_servers():
            return cls(external, started_here=False)
        config = launcher.BrokerConfig.from_env()
        started_here = not launcher.status(config).running
        return cls(launcher.up(config).bootstrap_servers, started_here, config)

    def stop_if_started_here(self) -> bool:
        if self.started_here and self.config is not None:
            launcher.down(self.config)
            return True
        return False


@dataclass
class Child:
    name: str  # "worker", "feed source"
    process: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace: float = 30.0) -> int:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()


@dataclass
class Children:
    run_dir: Path
    env: dict[str, str]
    started: list[Child] = field(default_factory=list)

    def start(self, name: str, *cli_args: str) -> Child:
        log_path = self.run_dir / f"{name.replace(' ', '-')}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "agents.cli", *cli_args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        child = Child(name, process, log_path)
        self.started.append(child)
        return child

    def dead(self) -> list[Child]:
        return [c for c in self.started if not c.alive()]

    def stop_all(self) -> None:
        """The feed source first (nothing new comes in), then the worker."""
        for child in reversed(self.started):
            child.stop()
