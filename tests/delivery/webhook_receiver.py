"""A real HTTP webhook receiver on 127.0.0.1 for delivery tests.

Every request is checked the way a subscriber would: the `standardwebhooks` library verifies
the signature and the `cloudevents` SDK parses the body (a batch-mode body, a JSON array of
structured events, event by event). What it answers is set by `behaviour(request_number, event)
-> Reply` (for a batch, its first event's), changeable while it runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from aiohttp import web
from cloudevents.v1.http import from_dict, from_http
from standardwebhooks.webhooks import Webhook

VALIDATION_TYPE = "no.samband.subscription.validation"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"


@dataclass
class Reply:
    status: int = 204
    delay: float = 0.0  # seconds before answering (a slow or timing-out subscriber)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    webhook_id: str  # the event's idempotency key: `webhook-id`, or in a batch its `idempotencykey` attribute
    event: object  # cloudevents.v1.http.CloudEvent
    headers: dict[str, str]
    status: int
    at: float  # time.time() when it arrived
    body: bytes = b""  # as it came over the wire


def refuse_first_event():
    """A behaviour: 503 for the first event (not the validation handshake), 2xx for everything else."""
    refused: list[str] = []

    def behaviour(_number: int, event) -> Reply:
        if event["type"] != VALIDATION_TYPE and not refused:
            refused.append(event["id"])
            return Reply(503)
        return Reply()

    return behaviour


def ok(_number: int, _event) -> Reply:
    return Reply()


class Receiver:
    def __init__(self, secret: str, behaviour: Callable[[int, object], Reply] = ok, max_body: int | None = None):
        self.verifier = Webhook(secret)
        self.max_body = max_body  # a larger body is answered 413, as a server's body limit would
        self.behaviour = behaviour
        self.received: list[Received] = []  # every request, whatever was answered
        self.delivered: list[Received] = []  # requests answered 2xx
        self._events: list[Received] = []  # delivered, without the verification handshake
        self.unique_ids: set[str] = set()  # webhook-ids of delivered events
        self.batches: list[list[Received]] = []  # batch-mode requests, whatever was answered
        self.unverified = 0  # requests whose signature did not verify (answered 500)
        self.too_large = 0  # requests answered 413 (max_body)
        self.changed = asyncio.Condition()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self.echo_challenge = True  # False: a server that answers 2xx to anything, as a careless one would

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        if self.max_body is not None and len(body) > self.max_body:
            self.too_large += 1
            return web.Response(status=413)
        try:
            self.verifier.verify(body, headers, json_parse=False)
        except Exception:
            self.unverified += 1
            raise  # a 500, and no delivery
        if headers.get("Content-Type", "").startswith(BATCH_CONTENT_TYPE):
            events = [from_dict(item) for item in orjson.loads(body)]
            reply = self.behaviour(len(self.received), events[0])
            # In a batch, each event's own idempotency key is its extension attribute.
            records = [Received(e["idempotencykey"], e, headers, reply.status, time.time(), body) for e in events]
            self.batches.append(records)
        else:
            event = from_http(headers, body)
            reply = self.behaviour(len(self.received), event)
            records = [Received(headers["webhook-id"], event, headers, reply.status, time.time(), body)]
        event = records[0].event
        self.received += records
        if reply.delay:
            await asyncio.sleep(reply.delay)  # the simulated subscriber is slow; not a test wait
        if 200 <= reply.status < 300:
            self.delivered += records
            for record in records:
                if record.event["type"] != VALIDATION_TYPE:
                    self._events.append(record)
                    self.unique_ids.add(record.webhook_id)
        async with self.changed:
            self.changed.notify_all()
        if event["type"] == VALIDATION_TYPE and self.echo_challenge:  # what a subscriber must do to be verified
            # (in batch mode the validation event comes as a batch of one)
            status = 200 if reply.status == 204 else reply.status  # a 204 carries no body to echo in
            return web.json_response({"challenge": event.get_data()["challenge"]}, status=status, headers=reply.headers)
        return web.Response(status=reply.status, headers=reply.headers)

    async def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1 (`port` to come back on the same address after stop())."""
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                async with self.changed:
                    await self.changed.wait_for(predicate)
        except TimeoutError:
            raise AssertionError(
                f"{self.url}: not {what} within {timeout:.0f} s; received {len(self.received)}, delivered {len(self.delivered)}"
            ) from None

    def events(self) -> list[Received]:
        """Delivered events, without the verification handshake."""
        return self._events

    def verified(self) -> bool:
        return any(r.event["type"] == VALIDATION_TYPE for r in self.delivered)
