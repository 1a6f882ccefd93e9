"""The HTTP ingest source passes the conformance kit, as a push source (see connectors/testing/source_kit.py).

Its environment is a municipal system's client: it POSTs each queued event until it gets
an answer other than 503 or a refused connection, as a real client retries until 202.
"""

from __future__ import annotations

import asyncio
import os
import socket
from contextlib import asynccontextmanager

import aiohttp
from http_ingest_client import TOKENS, auth, cloudevent, ingest_config, token_env

from connectors.http_ingest.source import HttpIngestSource
from connectors.testing import SourceConformance
from schemas.examples import BERGEN_ADDRESS, OSLO_ADDRESS

STRUCTURED = {"Content-Type": "application/cloudevents+json"}
RETRY_S = 0.05


class RetryingClient:
    def __init__(self, port: int):
        self.port = port
        self.queue: asyncio.Queue[dict] = asyncio.Queue()
        self.sent: dict[str, dict] = {}

    def send(self, event: dict) -> None:
        self.sent[event["id"]] = event
        self.queue.put_nowait(event)

    async def run(self) -> None:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{self.port}") as http:
            while True:
                event = await self.queue.get()
                while not await self._posted(http, event):
                    await asyncio.sleep(RETRY_S)  # the source is down or Kafka did not confirm: retry

    @staticmethod
    async def _posted(http: aiohttp.ClientSession, event: dict) -> bool:
        try:
            async with http.post("/events", json=event, headers={**STRUCTURED, **auth()}) as response:
                return response.status != 503
        except aiohttp.ClientConnectionError:
            return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestHttpIngestConformance(SourceConformance):
    connector = HttpIngestSource
    bad_input_reason = "identity.checksum"
    keeps_bookmark = False
    systems = [{"name": "x", "token_ref": "env:X_TOKEN", "event_types": ["Move"]}]
    invalid_configs = [
        ({}, "systems"),
        ({"systems": []}, "systems"),
        ({"port": 70_000, "systems": systems}, "port"),
        ({"systems": [{"name": "x", "token_ref": "conformance-secret-1", "event_types": ["Move"]}]}, "systems"),
        ({"systems": systems, "max_batch": 0}, "max_batch"),
        ({"systems": systems, "listen_port": 1}, "listen_port"),
    ]
    secret_values = ("conformance-secret-1",)

    @asynccontextmanager
    async def environment(self, tmp_path):
        previous = {token_env(name): os.environ.get(token_env(name)) for name in TOKENS}
        os.environ.update({token_env(name): token for name, token in TOKENS.items()})
        client = RetryingClient(_free_port())
        task = asyncio.create_task(client.run())
        try:
            yield client
        finally:
            task.cancel()
            for name, value in previous.items():
                if value is None:
                    del os.environ[name]
                else:
                    os.environ[name] = value

    def config(self, client: RetryingClient) -> dict:
        return ingest_config(port=client.port)

    async def add_inputs(self, client: RetryingClient, count: int) -> list[str]:
        events = [cloudevent("Move") for _ in range(count)]
        for event in events:
            client.send(event)
        return [e["id"] for e in events]

    async def add_bad_input(self, client: RetryingClient) -> None:
        good = cloudevent("Move")["person"]
        wrong_k2 = str((int(good[-1]) + 1) % 10)
        client.send(cloudevent("Move", person=good[:-1] + wrong_k2))

    async def redeliver(self, client: RetryingClient, ids: list[str]) -> None:
        for event_id in ids:
            client.send(client.sent[event_id])

    def personal_values(self, client: RetryingClient) -> list[str]:
        return [v for a in (OSLO_ADDRESS, BERGEN_ADDRESS) for v in a.values() if isinstance(v, str) and len(v) > 4]
