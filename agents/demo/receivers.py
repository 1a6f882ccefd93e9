"""The sample systems' receiving ends, local to the demo: what each system got, checked as it would check it.

- `WebhookReceiver`: an aiohttp server on 127.0.0.1 (free port) that verifies every request's
  Standard Webhooks signature with the `standardwebhooks` library (401 if it fails), answers
  the bus's validation handshake, and records each event. With `outage_seconds` it answers
  500 to events for that long after the first one arrives, then recovers: the bus retries.
- `TopicReceiver`: a Kafka-native system reading its own topic (Confluent wire-format Avro of
  its projection, CloudEvents attributes in `ce_*` headers; docs/delivery.md).
- `FolderReceiver`: a system that takes batch files from its folder (kind `files`).
- `PullReceiver`: a system that takes no incoming calls and fetches its events (kind `pull`) from
  the worker's `GET /subscriptions/{id}/events` with its tenant's token, following the cursor.

Both keep what they got in memory (`events`, for the leak check) and counts for the view.
Nothing here logs or prints event contents.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from agents.demo.checks import PURGE_TYPE, ReceivedEvent
from bus import clients
from connectors.kafka_sink.sink import register_schemas
from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.registry import CatalogRegistry

VALIDATION_TYPE = "no.samband.subscription.validation"


@dataclass
class Counts:
    requests: int = 0  # every POST, handshake and refusals included
    refused: int = 0  # answered 500 during the outage
    bad_signature: int = 0  # answered 401: the signature did not verify
    duplicates: int = 0  # an event id already received (a retry whose answer was lost)


@dataclass
class Recording:
    """What one system has received."""

    subscription: str
    events: list[ReceivedEvent] = field(default_factory=list)
    event_ids: set[str] = field(default_factory=set)
    counts: Counts = field(default_factory=Counts)
    verified: bool = False  # the validation handshake reached it
    first_at: float | None = None  # time.time() when its first event arrived

    def record(self, cloudevent: dict) -> None:
        if self.first_at is None:
            self.first_at = time.time()
        if cloudevent["id"] in self.event_ids:
            self.counts.duplicates += 1
            return
        full_type = cloudevent["type"]
        short = full_type if full_type == PURGE_TYPE else full_type.rpartition(".")[2]
        self.event_ids.add(cloudevent["id"])
        self.events.append(
            ReceivedEvent(
                self.subscription, cloudevent["id"], short, cloudevent.get("subject", ""), cloudevent.get("data") or {}
            )
        )


class WebhookReceiver:
    def __init__(self, subscription: str, secret: str, outage_seconds: float = 0.0, clock=time.monotonic):
        self.recording = Recording(subscription)
        self.outage_seconds = outage_seconds
        self.clock = clock
        self.outage_started: float | None = None  # clock() at the first event
        self.url = ""
        self._verifier = Webhook(secret)
        self._runner: web.AppRunner | None = None

    def in_outage(self) -> bool:
        return self.outage_started is not None and self.clock() - self.outage_started < self.outage_seconds

    async def _handle(self, request: web.Request) -> web.Response:
        counts = self.recording.counts
        counts.requests += 1
        body = await request.read()
        try:
            self._verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
            counts.bad_signature += 1
            return web.Response(status=401)
        cloudevent = json.loads(body)
        if cloudevent.get("type") == VALIDATION_TYPE:
            self.recording.verified = True
            return web.json_response({"challenge": (cloudevent.get("data") or {}).get("challenge")})  # echoed: verified
        if self.outage_seconds and self.outage_started is None:
            self.outage_started = self.clock()
        if self.in_outage():
            counts.refused += 1
            return web.Response(status=500)
        self.recording.record(cloudevent)
        return web.Response(status=204)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class TopicReceiver:
    def __init__(self, subscription: str, bootstrap: str, topic: str, fields: dict[str, list[str]]):
        self.recording = Recording(subscription, verified=True)
        self.topic = topic
        # The system knows its contract: the projection schemas of the fields it is granted.
        registry = CatalogRegistry(catalog())
        register_schemas(registry, topic, fields)
        self._codec = Codec(registry)
        self._consumer = clients.consumer(
            bootstrap,
            topic,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            metadata_max_age_ms=2000,
        )
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            for records in (await self._consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    self.recording.counts.requests += 1
                    headers = {k: v.decode() for k, v in record.headers}
                    self.recording.record(
                        {
                            "id": headers["ce_id"],
                            "type": headers["ce_type"],
                            "subject": headers.get("ce_subject", ""),
                            "data": self._codec.decode(record.value),
                        }
                    )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


class FolderReceiver:
    """A system that reads batch files (delivery kind `files`): it takes each finished file in its
    folder once, as a file-reading system polls its drop folder."""

    POLL_SECONDS = 0.5

    def __init__(self, subscription: str, folder: Path):
        self.recording = Recording(subscription, verified=True)
        self.folder = folder
        self._taken: set[str] = set()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    def take_new(self) -> None:
        for path in sorted(self.folder.glob("*.jsonl")):  # names sort by the time each was finished
            if path.name not in self._taken:
                self._taken.add(path.name)
                for line in path.read_text().splitlines():
                    self.recording.counts.requests += 1
                    self.recording.record(json.loads(line)["event"])

    async def _follow(self) -> None:
        while True:
            self.take_new()
            await asyncio.sleep(self.POLL_SECONDS)  # the system's polling interval

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.take_new()  # the last batch, finished when the worker stopped


class PullReceiver:
    """A system that fetches its events: GET /subscriptions/{id}/events with its token, `after` the
    cursor it was last given, at most every POLL_SECONDS when it has caught up, and waiting as a
    429's Retry-After asks (docs/delivery.md, "A pull subscription")."""

    POLL_SECONDS = 1.0  # the worker's SAMBAND_PULL_POLL_INTERVAL_S: sooner would be answered 429

    def __init__(self, subscription: str, base_url: str, token: str):
        self.recording = Recording(subscription, verified=True)
        self.url = f"{base_url}/subscriptions/{subscription}/events"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.after: str | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def fetch(self, http: aiohttp.ClientSession) -> float | None:
        """One page; None when it has caught up, else the seconds to wait before the next (0: more is waiting)."""
        params = {"limit": "500", **({"after": self.after} if self.after else {})}
        headers = {**self.headers, **({"If-None-Match": f'"{self.after}"'} if self.after else {})}
        async with http.get(self.url, params=params, headers=headers) as response:
            self.recording.counts.requests += 1
            if response.status == 429:
                self.recording.counts.refused += 1
                return float(response.headers.get("Retry-After", self.POLL_SECONDS))
            if response.status != 200:  # 304: nothing new; 404 until the worker has read the subscription
                return None
            page = await response.json()
        for event in page["events"]:
            self.recording.record(event)
        self.after = page["next"]
        return 0.0 if page["more"] else None

    async def _follow(self) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    wait = await self.fetch(http)
                except aiohttp.ClientError:  # the worker's web server is starting or stopping
                    wait = None
                await asyncio.sleep(self.POLL_SECONDS if wait is None else wait)  # the system's polling interval

    async def drain(self, timeout: float = 15.0) -> None:
        """Fetch until a page says nothing more is waiting (before the worker stops)."""
        await self.stop()
        async with asyncio.timeout(timeout), aiohttp.ClientSession() as http:
            while (wait := await self.fetch(http)) is not None:
                await asyncio.sleep(wait)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
