"""A Kafka broker of a test's own (deploy/launcher.py, free ports, the test's tmp folder), so that
stopping it leaves the session's broker untouched. Only where the project starts brokers itself:
with KAFKA_BOOTSTRAP_SERVERS set, the tests that need one are skipped (CI runs them)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from support import free_port

from deploy import launcher

needs_own_broker = pytest.mark.skipif(
    launcher.external_bootstrap_servers() is not None, reason="KAFKA_BOOTSTRAP_SERVERS set: no broker of its own"
)


@asynccontextmanager
async def own_broker(tmp: Path):
    """A started broker; yields its config (`bootstrap_servers`; launcher.down/up stop and restart it)."""
    config = replace(
        launcher.BrokerConfig.from_env(), port=free_port(), controller_port=free_port(), state_dir=tmp / "kafka"
    )
    try:
        await asyncio.to_thread(launcher.up, config)
        yield config
    finally:
        await asyncio.to_thread(launcher.down, config)
