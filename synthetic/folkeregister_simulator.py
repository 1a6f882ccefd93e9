"""A local stand-in for Folkeregisteret's event feed API (docs/folkeregister-feed.md).

Serves a FeedStore over HTTP with bearer-token auth, ETag/304, and deterministic fault
injection (429 with Retry-After, 500, slow pages and bulk requests). `run_simulator` starts
it for tests and demos; with `live` and `rate` the feed keeps growing while it runs.

`POST …/hendelser/dokumenter` (bulk documents) is this simulator's extension, not an API of
the real register: a proxy in front of the register could offer it; `bulk=False` leaves it out.
The bulk answer is JSON lines so that each document's bytes reach the client unchanged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import structlog
from aiohttp import web

from connectors.folkeregister.feed_format import API_PATH, BULK_LIMIT, BULK_PATH, EventDocument
from synthetic.feed_store import FeedStore

FEED_PATH = f"{API_PATH}/feed"
LATEST_PATH = f"{API_PATH}/siste/sekvensnummer"
DOCUMENT_PATH = API_PATH + "/{dokumentid}"
DEFAULT_TOKEN = "synthetic-folkeregister-token"

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Faults:
    """Shares of authorised requests that fail, drawn from a seeded RNG in request order."""

    throttle_share: float = 0.0  # answered 429 with Retry-After
    error_share: float = 0.0  # answered 500
    slow_share: float = 0.0  # feed pages and bulk document requests delayed by slow_ms
    slow_ms: int = 0
    retry_after_s: int = 1
    seed: int = 0


@dataclass
class RunningSimulator:
    base_url: str  # e.g. http://127.0.0.1:8123 (API paths are appended to it)
    store: FeedStore
    token: str

    @property
    def feed_url(self) -> str:
        return self.base_url + FEED_PATH

    @property
    def latest_url(self) -> str:
        return self.base_url + LATEST_PATH

    @property
    def bulk_url(self) -> str:
        return self.base_url + BULK_PATH

    def document_url(self, document_id: str) -> str:
        return f"{self.base_url}{API_PATH}/{document_id}"

    def append(self, documents: Iterable[EventDocument]) -> int:
        """Grow the feed now (tests use this instead of waiting for the live rate)."""
        return self.store.extend(documents)


def create_app(
    store: FeedStore, *, token: str = DEFAULT_TOKEN, faults: Faults = Faults(), bulk: bool = True
) -> web.Application:
    draw = random.Random(faults.seed)

    @web.middleware
    async def guard(request: web.Request, handler):
        supplied = request.headers.get("Authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
            return _json_error(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
        roll = draw.random()
        if roll < faults.throttle_share:
            log.info("simulator.fault", fault="429", path=request.path)
            return _json_error(429, "too many requests", headers={"Retry-After": str(faults.retry_after_s)})
        if roll < faults.throttle_share + faults.error_share:
            log.info("simulator.fault", fault="500", path=request.path)
            return _json_error(500, "synthetic internal error")
        return await handler(request)

    async def feed(request: web.Request) -> web.Response:
        try:
            seq = int(request.query["seq"])
        except (KeyError, ValueError):
            return _json_error(400, "query parameter seq (an integer >= 1) is required")
        if seq < 1:
            return _json_error(400, "seq must be >= 1")
        await slow_down()
        body, count = store.page(seq)
        return _with_etag(request, f'"feed-{seq}-{count}"', body)

    async def latest(request: web.Request) -> web.Response:
        return _with_etag(request, f'"siste-{store.latest}"', str(store.latest).encode())

    async def document(request: web.Request) -> web.Response:
        body = store.document(request.match_info["dokumentid"])
        if body is None:
            return _json_error(404, "no such hendelsesdokument")
        return web.Response(body=body, content_type="application/json")

    async def documents(request: web.Request) -> web.Response:
        """A JSON array of ids -> JSON lines: each document unchanged, in order, `null` for an unknown id."""
        try:
            ids = json.loads(await request.read())
        except ValueError:
            ids = None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return _json_error(400, "body must be a JSON array of hendelsesdokument ids")
        if len(ids) > BULK_LIMIT:
            return _json_error(400, f"at most {BULK_LIMIT} ids per request")
        await slow_down()
        body = b"".join((b"null" if d is None else d) + b"\n" for d in store.documents(ids))
        return web.Response(body=body, content_type="application/x-ndjson")

    async def slow_down() -> None:
        if faults.slow_ms and draw.random() < faults.slow_share:
            await asyncio.sleep(faults.slow_ms / 1000)

    app = web.Application(middlewares=[guard])
    app.router.add_get(FEED_PATH, feed)
    app.router.add_get(LATEST_PATH, latest)
    if bulk:
        app.router.add_post(BULK_PATH, documents)
    app.router.add_get(DOCUMENT_PATH, document)
    return app


def _with_etag(request: web.Request, etag: str, body: bytes) -> web.Response:
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={"ETag": etag})
    return web.Response(body=body, content_type="application/json", headers={"ETag": etag})


def _json_error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"status": status, "melding": message}, status=status, headers=headers)


@asynccontextmanager
async def run_simulator(
    events: Iterable[EventDocument],
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    token: str = DEFAULT_TOKEN,
    faults: Faults = Faults(),
    live: Iterator[EventDocument] | None = None,
    rate: float = 0.0,
    bulk: bool = True,
) -> AsyncIterator[RunningSimulator]:
    """Serve `events` (loaded into a store first); with `live` and `rate`, append rate events/s.

    `bulk=False` serves documents one by one only, as the real register does.
    """
    store = FeedStore()
    store.extend(events)
    runner = web.AppRunner(create_app(store, token=token, faults=faults, bulk=bulk), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = site._server.sockets[0].getsockname()[1]
    simulator = RunningSimulator(base_url=f"http://{host}:{bound_port}", store=store, token=token)
    log.info("simulator.started", port=bound_port, latest=store.latest)
    grower = asyncio.create_task(_grow(store, live, rate)) if live is not None and rate > 0 else None
    try:
        yield simulator
    finally:
        if grower:
            grower.cancel()
            with suppress(asyncio.CancelledError):
                await grower
        await runner.cleanup()
        store.close()


async def _grow(store: FeedStore, live: Iterator[EventDocument], rate: float) -> None:
    """Append events at about `rate` per second, in ticks of 0.1 s."""
    loop = asyncio.get_running_loop()
    started, appended = loop.time(), 0
    while True:
        await asyncio.sleep(0.1)
        due = int((loop.time() - started) * rate) - appended
        if due > 0:
            appended += store.extend(next(live) for _ in range(due))
            log.debug("simulator.grew", latest=store.latest)
