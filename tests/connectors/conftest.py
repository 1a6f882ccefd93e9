"""Connector tests use the conformance kit's fixtures, as a third-party connector package would."""

import aiohttp
import pytest
from http_ingest_client import ingest_config, running_ingest, set_tokens

from connectors.testing.plugin import *  # noqa: F403


@pytest.fixture
async def ingest(connector_kafka, connector_app_id, monkeypatch):
    """An HTTP client of a running HTTP ingest source (its systems' tokens set), on this test's topics."""
    set_tokens(monkeypatch)
    async with running_ingest(connector_kafka, connector_app_id, ingest_config()) as source:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{source.port}") as http:
            yield http
