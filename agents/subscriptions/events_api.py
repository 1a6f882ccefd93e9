"""`GET /subscriptions/{id}/events?after=CURSOR&limit=N`: a subscription fetches what it was sent.

For a pull subscription (`delivery: {kind: pull}`) this is how its events arrive; any other
subscription can read what the router sent it in the last SAMBAND_HISTORY_DAYS days, to recover
what it missed (agents/delivery/sent.py). Scope `subscriptions:read`, and only the token's own
subscriptions (another tenant's is 404).

    200 {"subscription", "events": [CloudEvent + "idempotencykey"], "next": CURSOR, "more": bool}
        ETag: "<next>"; ask again with after=<next>. `more`: the page stopped early, ask at once.
    304 with If-None-Match: "<after>" when nothing is new
    429 + Retry-After: asked again within SAMBAND_PULL_POLL_INTERVAL_S of a page that had it all,
        within 0.2 s of any page, or while a read of the subscription is in progress
    400 request.invalid_cursor / request.invalid_limit; 404 subscription.not_found;
    503 events.starting (Retry-After) until the delivery stage has read every person's grade, and
    events.unavailable when this worker runs no delivery stage (it holds the grades).
The checks run in that order: a poll too soon is 429 even with If-None-Match. The poll interval is
kept per subscription in this worker's memory: every client of the subscription shares it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

from aiohttp import web

from agents.delivery.sent import CursorError, Reading, SentReader
from agents.subscriptions.http_api import authorise
from agents.subscriptions.tokens import READ

DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
READER_KEY = web.AppKey("sent_reader", tuple)  # (SentReader | None, Polls)


class Polls:
    """What bounds the reads of this worker: after a page that reached the end a subscription waits
    `interval`, after any page MIN_SPACING; one read per subscription at a time; and one history scan
    (everyone's deliveries) at a time in the whole worker."""

    MIN_SPACING = 0.2  # seconds between two reads of one subscription, even while it catches up

    def __init__(self, interval: float):
        self.interval = interval
        self._next: dict[str, float] = {}  # subscription -> monotonic time it may ask again
        self.reading: set[str] = set()
        self.history = asyncio.Semaphore(1)

    def wait_left(self, subscription: str) -> float:
        return max(0.0, self._next.get(subscription, 0.0) - time.monotonic())

    def asked(self, subscription: str) -> None:
        self._next[subscription] = max(self._next.get(subscription, 0.0), time.monotonic() + self.MIN_SPACING)

    def caught_up(self, subscription: str) -> None:
        self._next[subscription] = time.monotonic() + self.interval


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
    if not api.holds(token, sub_id):
        return _error(404, "subscription.not_found", "no subscription with this id")
    reader, polls = request.app[READER_KEY]
    if reader is None:
        return _error(503, "events.unavailable", "this worker runs no delivery stage; ask a worker that does")
    if not reader.ready():
        return _error(
            503, "events.starting", "the worker is still reading each person's grade; ask again", **{"Retry-After": "1"}
        )
    limit_text = request.query.get("limit", str(DEFAULT_LIMIT))
    if not limit_text.isascii() or not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
        return _error(400, "request.invalid_limit", f"limit is a whole number from 1 to {MAX_LIMIT}")
    after = request.query.get("after") or None
    left = polls.wait_left(sub_id)
    if left > 0:
        return _error(
            429,
            "events.polled_too_fast",
            f"asked again too soon after the last page; ask again in {math.ceil(left)} s",
            **{"Retry-After": str(math.ceil(left))},
        )
    if sub_id in polls.reading:
        return _error(429, "events.in_progress", "a read of this subscription is in progress", **{"Retry-After": "1"})
    sub = api.owned(token, sub_id)  # parsed only for a read that goes ahead
    if sub is None:  # deleted meanwhile
        return _error(404, "subscription.not_found", "no subscription with this id")
    fields = {event_type: tuple(paths) for event_type, paths in sub.fields.items()}
    reading = Reading(sub_id, sub.delivery.kind == "pull", sub.public_body, sub.kommuner == "all", fields)
    polls.reading.add(sub_id)
    try:
        async with polls.history if not reading.pull else contextlib.nullcontext():
            page = await reader.page(reading, after, int(limit_text))
    except CursorError as exc:
        return _error(400, "request.invalid_cursor", str(exc))
    finally:
        polls.reading.discard(sub_id)
        polls.asked(sub_id)
    if not page.more:
        polls.caught_up(sub_id)
    etag = f'"{page.next}"'
    headers = {"ETag": etag, "Cache-Control": "no-store"}
    if not page.events and request.headers.get("If-None-Match") == f'"{after}"' and page.next == after:
        return web.Response(status=304, headers=headers)
    body = {"subscription": sub_id, "events": page.events, "next": page.next, "more": page.more}
    if page.skipped:
        body["skipped"] = page.skipped
    return web.json_response(body, headers=headers)
