"""The broker a test session starts for itself: free ports and a fresh state folder, both its own.

A session never takes the developer's broker (`samband kafka up`, ~/.local/state/samband/kafka):
the topics of every earlier run would pile up there (a run leaves about 1,900 partitions) until the
broker runs out of open files mid-run. Set KAFKA_BOOTSTRAP_SERVERS to run against a broker of your own.

A session killed hard (kill -9, or pytest-timeout's exit) cannot stop its broker: the JVM runs on
in its own process group (so Ctrl-C in a terminal never kills it mid-write). The next session
deletes the state folders of brokers no longer running; a broker still running is left alone (it
may be another session's): `pkill -f samband-test-broker-` stops them all.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from support import free_port

from deploy import launcher

PREFIX = "samband-test-broker-"


def start() -> launcher.BrokerConfig:
    """Start a fresh broker and return its config; `stop` it at the end of the session."""
    _delete_stale_folders()
    state = Path(tempfile.mkdtemp(prefix=PREFIX))
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


def _delete_stale_folders() -> None:
    """State folders of earlier sessions whose broker no longer runs."""
    for folder in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        if not launcher.status(replace(launcher.BrokerConfig.from_env(), state_dir=folder)).running:
            shutil.rmtree(folder, ignore_errors=True)
