"""One demo run shared by the demo tests (tests/demo/test_demo_run.py): it takes minutes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

DEMO_POPULATION = 20_000
DEMO_SEED = 0


@pytest.fixture(scope="session")
def demo_run(kafka_bootstrap, tmp_path_factory):
    """One small demo run: its exit code and output, and the run directory it used (its logs are there)."""
    cwd = tmp_path_factory.mktemp("demo")
    # As `make demo` runs on a fresh machine: without the test session's loopback allow list and
    # least retry wait (tests/conftest.py), which once hid a leak check that failed outside the tests.
    outside = {
        k: v for k, v in os.environ.items() if k not in ("SAMBAND_WEBHOOK_ALLOW_NETWORKS", "SAMBAND_RETRY_MIN_SECONDS")
    }
    env = {**outside, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "COLUMNS": "160"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agents.cli",
            "demo",
            "--duration",
            "45",
            "--population",
            str(DEMO_POPULATION),
            "--seed",
            str(DEMO_SEED),
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    [run_dir] = list((cwd / ".samband" / "demo").iterdir())
    return result, run_dir
