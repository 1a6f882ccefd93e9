"""The broker a test session starts for itself: free ports and a fresh state folder, both its own.

A session never takes the developer's broker (`samband kafka up`, ~/.local/state/samband/kafka):
the topics of every earlier run would pile up there (a run leaves about 1,900 partitions) until the
broker runs out of open files mid-run. Set KAFKA_BOOTSTRAP_SERVERS to run against a broker of your own.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from support import free_port

from deploy import launcher


def start() -> launcher.BrokerConfig:
    """Start a fresh broker and return its config; `stop` it at the end of the session."""
    state = Path(tempfile.mkdtemp(prefix="samband-test-broker-"))
    config = replace(launcher.BrokerConfig.from_env(), port=free_port(), controller_port=free_port(), state_dir=state)
    try:
        launcher.up(config)
    except BaseException:
        shutil.rmtree(state, ignore_errors=True)
        raise
    return config


def stop(config: launcher.BrokerConfig) -> None:
    """Stop the broker and delete its state folder with everything the session wrote."""
    try:
        launcher.down(config)
    finally:
        shutil.rmtree(config.state_dir, ignore_errors=True)
