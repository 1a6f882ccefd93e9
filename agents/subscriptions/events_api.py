"""`GET /subscriptions/{id}/events?after=CURSOR&limit=N`: a subscription fetches what it was sent.

For a pull subscription (`delivery: {kind: pull}`) this is how its events arrive; any other
subscription can read what the router sent it in the last SAMBAND_HISTORY_DAYS days, to recover
what it missed (agents/delivery/sent.py). Scope `subscriptions:read`, and only the token's own
subscriptions (another tenant's is 404).

    200 {"subscription", "events": [CloudEvent + "idempotencykey"], "next": CURSOR, "more": bool}
        ETag: "<next>"; ask again with after=<next>. `more`: the page stopped early, ask at once.
    304 with If-None-Match: "<after>" when nothing is new
    429 + Retry-After: asked again within SAMBAND_PULL_POLL_INTERVAL_S of a page that had it all
    400 request.invalid_cursor / request.invalid_limit; 404 subscription.not_found;
    503 events.unavailable when this worker runs no delivery stage (it holds the grades).
"""

from __future__ import annotations

import math
import time

from aiohttp import web

from agents.delivery.sent import CursorError, Reading, SentReader
from agents.subscriptions.http_api import authorise
from agents.subscriptions.tokens import READ

DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
READER_KEY = web.AppKey("sent_reader", object)


class Polls:
    """When each subscription last got a page that reached the end: polling again sooner is too fast."""

    def __init__(self, interval: float):
        self.interval = interval
        self._caught_up: dict[str, float] = {}

    def wait_left(self, subscription: str) -> float:
        since = self._caught_up.get(subscription)
        return 0.0 if since is None else max(0.0, self.interval - (time.monotonic() - since))

    def caught_up(self, subscription: str) -> None:
        self._caught_up[subscription] = time.monotonic()


def add_routes(web_app: web.Application, reader: SentReader | None, poll_interval: float) -> None:
    """`reader` None: this worker runs no delivery stage, and answers 503."""
    web_app[READER_KEY] = (reader, Polls(poll_interval))
    web_app.router.add_get("/subscriptions/{id}/events", get_events)


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers or None)


async def get_events(request: web.Request) -> web.Response:
    api, token, denied = authorise(request, READ)
    if denied:
        return denied
    sub_id = request.match_info["id"]
    sub = api.owned(token, sub_id)
    if sub is None:
        return _error(404, "subscription.not_found", "no subscription with this id")
    reader, polls = request.app[READER_KEY]
    if reader is None:
        return _error(503, "events.unavailable", "this worker runs no delivery stage; ask a worker that does")
    limit_text = request.query.get("limit", str(DEFAULT_LIMIT))
    if not limit_text.isascii() or not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
        return _error(400, "request.invalid_limit", f"limit is a whole number from 1 to {MAX_LIMIT}")
    after = request.query.get("after") or None
    left = polls.wait_left(sub_id)
    if left > 0:
        return _error(
            429,
            "events.polled_too_fast",
            f"nothing was left at the last poll; ask again in {math.ceil(left)} s",
            **{"Retry-After": str(math.ceil(left))},
        )
    reading = Reading(sub_id, sub.delivery.kind == "pull", sub.public_body, sub.kommuner == "all")
    try:
        page = await reader.page(reading, after, int(limit_text))
    except CursorError as exc:
        return _error(400, "request.invalid_cursor", str(exc))
    if not page.more:
        polls.caught_up(sub_id)
    etag = f'"{page.next}"'
    headers = {"ETag": etag, "Cache-Control": "no-store"}
    if not page.events and request.headers.get("If-None-Match") == f'"{after}"' and page.next == after:
        return web.Response(status=304, headers=headers)
    body = {"subscription": sub_id, "events": page.events, "next": page.next, "more": page.more}
    return web.json_response(body, headers=headers)
