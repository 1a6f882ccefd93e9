"""The operations tests' bus: one whole worker per test module (tests/operations/ops_bus.py)."""

from __future__ import annotations

import pytest

from ops_bus import operations_bus


@pytest.fixture(scope="module")
async def ops_bus(kafka_bootstrap, tmp_path_factory):
    async with operations_bus(kafka_bootstrap, tmp_path_factory.mktemp("ops-bus")) as bus:
        yield bus
