"""The webhook sink: each delivery record becomes one signed CloudEvents POST.

    sink = WebhookSink(WebhookSink.parse_config({"url": ..., "secret_ref": "env:BERGEN_HS"}), context)
    outcomes = await sink.write(batch)       # one HttpOutcome per SinkRecord, in order
    outcome = await sink.verify("bergen-helsestasjon")   # the validation handshake

`webhook-id` is the record's idempotency key, so a retry or replay of the same delivery
carries the same id and the subscriber can drop duplicates.

With `batch` in its config, a subscription gets several persons' events in one POST (CloudEvents
batch mode, a JSON array), signed once over the whole body. Each event then carries its own
idempotency key as the extension attribute `idempotencykey` (and its trace context as
`traceparent`, the CloudEvents tracing extension); the batch's `webhook-id` is made from the keys
it holds. The subscriber's answer is every event's outcome (a 2xx delivers them all, a 5xx
retries each, a 4xx rejects each), except a 413, which sends the batch again in halves.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from yarl import URL

from connectors.api import ConnectorConfig, Context, Sink, SinkRecord
from connectors.webhook import cloudevent
from connectors.webhook.config import WebhookConfig
from connectors.webhook.network import AllowList, literal_address
from connectors.webhook.outcome import HttpOutcome
from connectors.webhook.secrets import secret_ref_problem
from connectors.webhook.sender import WebhookSender, done

VALIDATION_TYPE = "no.samband.subscription.validation"
MALFORMED = "delivery.malformed"
IDEMPOTENCY_ATTRIBUTE = "idempotencykey"  # each event's idempotency key in a batch (a CloudEvents extension)
MALFORMED_DELIVERY = HttpOutcome(
    "rejected", MALFORMED, "delivery record is not delivery JSON with event and idempotency_key"
)


class WebhookSink(Sink):
    Config = WebhookConfig
    description = "HTTP POST of signed CloudEvents (Standard Webhooks) to one subscriber"
    config: WebhookConfig

    @classmethod
    def endpoint(cls, config: ConnectorConfig, subscription: str) -> object:
        assert isinstance(config, WebhookConfig)
        # A new URL or secret, or batch mode turned on or off: a new handshake (in batch mode it is a
        # batch of one, so the endpoint shows it reads batches).
        return [config.url, list(config.secret_refs), *(["batch"] if config.batch is not None else [])]

    @classmethod
    def refusal(cls, config: ConnectorConfig, subscription: str, bus: Mapping[str, Any] | None) -> str | None:
        """A secret that is not the subscription's own, always; and, with the bus's allow-list, what
        the sender would refuse at connect time anyway (connectors/webhook/network.py): plain http or
        a literal address that is not public, unless SAMBAND_WEBHOOK_ALLOW_NETWORKS lists it."""
        assert isinstance(config, WebhookConfig)
        problem = secret_ref_problem(subscription, config.secret_ref, config.previous_secret_ref)
        if problem or bus is None:
            return problem
        url = URL(config.url)
        host = url.host or ""
        if literal_address(host) is not None or url.scheme != "https":
            refused = bus.get("webhook_allow", AllowList()).refusal(url.scheme, host)
            if refused:
                return f"url: {refused}"
        return None

    def __init__(self, config: WebhookConfig, context: Context):
        super().__init__(config, context)
        # Where it may connect: the operator's allow-list (SAMBAND_WEBHOOK_ALLOW_NETWORKS), given by the delivery stage.
        self.sender = WebhookSender(
            config, context.extras.get("webhook_allow", AllowList()), context.extras.get("secrets_dir", "")
        )
        if config.batch is not None:
            self.max_batch, self.batch_wait = config.batch.max_events, config.batch.max_wait_ms / 1000
            self.max_batch_bytes = config.batch.max_bytes  # a write is about one request

    async def write(self, batch: Sequence[SinkRecord]) -> list[HttpOutcome]:
        return await self.write_deliveries([(_parsed(record.value), record.headers) for record in batch])

    def write_delivery(self, delivery: dict, headers: Sequence[tuple[str, bytes]]) -> Awaitable[HttpOutcome]:  # type: ignore[override]
        """The attempt for a parsed delivery, for the caller to await (the delivery lanes): a plain
        function returning the sender's coroutine, so each resumption of the request passes one
        level less (this is the hot path)."""
        if self.config.batch is not None:
            return self._write_alone_as_batch(delivery, headers)
        try:
            event, key = delivery["event"], delivery["idempotency_key"]
        except (KeyError, TypeError):
            return done(MALFORMED_DELIVERY)
        return self.sender.send(event, key, _traceparent(headers))

    async def write_deliveries(  # type: ignore[override]
        self, deliveries: Sequence[tuple[dict, Sequence[tuple[str, bytes]]]]
    ) -> list[HttpOutcome]:
        if self.config.batch is not None:
            return await self._write_batch(deliveries)
        if len(deliveries) == 1:
            return [await self.write_delivery(*deliveries[0])]
        return list(await asyncio.gather(*(self.write_delivery(d, h) for d, h in deliveries)))

    async def _write_alone_as_batch(self, delivery: dict, headers: Sequence[tuple[str, bytes]]) -> HttpOutcome:
        [outcome] = await self._write_batch([(delivery, headers)])
        return outcome

    async def _write_batch(self, deliveries: Sequence[tuple[dict, Sequence[tuple[str, bytes]]]]) -> list[HttpOutcome]:
        """One outcome per delivery, in order: the malformed ones rejected here, the others sent in
        as few batch-mode requests as `max_bytes` allows, one after another (this write holds one
        of the subscriber's `max_concurrency` connections), each taking its request's answer."""
        assert self.config.batch is not None
        outcomes: list[HttpOutcome] = []
        encoded: list[bytes] = []
        keys: list[str] = []
        places: list[int] = []
        for delivery, headers in deliveries:
            try:
                key = delivery["idempotency_key"]
                event = {**delivery["event"], IDEMPOTENCY_ATTRIBUTE: key}
            except (KeyError, TypeError):
                outcomes.append(MALFORMED_DELIVERY)
                continue
            if traceparent := _traceparent(headers):
                event["traceparent"] = traceparent  # the CloudEvents distributed tracing extension
            places.append(len(outcomes))
            outcomes.append(MALFORMED_DELIVERY)  # its place, filled below
            encoded.append(orjson.dumps(event))
            keys.append(key)
        for first, end, body in cloudevent.batch_bodies(encoded, self.config.batch.max_bytes):
            for i, answer in enumerate(await self._send_split(encoded[first:end], keys[first:end], body), first):
                outcomes[places[i]] = answer
        return outcomes

    async def _send_split(self, encoded: list[bytes], keys: list[str], body: bytes) -> list[HttpOutcome]:
        """The answer for each of a body's events. A 413 (the body is too large for the subscriber,
        whatever `max_bytes` says) sends each half again, down to single events: only an event that
        is too large alone is refused."""
        answer = await self.sender.send_batch(body, _batch_id(keys))
        if answer.http_status != 413 or len(keys) == 1:
            return [answer] * len(keys)
        half = len(keys) // 2
        outcomes = []
        for part, part_keys in ((encoded[:half], keys[:half]), (encoded[half:], keys[half:])):
            outcomes += await self._send_split(part, part_keys, cloudevent.batch_body(part))
        return outcomes

    async def verify(self, subscription: str) -> HttpOutcome:
        """Send the signed validation event with a random challenge; only a 2xx answer whose body
        echoes the challenge (e.g. `{"challenge": "..."}`) verifies the endpoint: a server that
        answers 200 to anything, or one the tenant does not run, does not pass. In batch mode the
        event comes as a batch of one: the endpoint must read batches to pass."""
        challenge = secrets.token_urlsafe(24)
        event = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "urn:samband:delivery",
            "type": VALIDATION_TYPE,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "subject": subscription,
            "datacontenttype": "application/json",
            "data": {"subscription": subscription, "challenge": challenge},
        }
        msg_id = f"validation.{subscription}.{event['id']}"
        if self.config.batch is not None:  # like every event of a batch, with its key
            body = cloudevent.batch_body([orjson.dumps({**event, IDEMPOTENCY_ATTRIBUTE: msg_id})])
            return await self.sender.send_batch(body, msg_id, echo=challenge)
        return await self.sender.send(event, msg_id, echo=challenge)

    async def stop(self) -> None:
        await self.sender.close()


def _parsed(value: bytes | None) -> dict:
    try:
        parsed = orjson.loads(value or b"")
    except ValueError:
        return {}  # rejected as malformed: no event
    return parsed if isinstance(parsed, dict) else {}


def _traceparent(headers: Sequence[tuple[str, bytes]]) -> str | None:
    return next((v.decode() for k, v in headers if k == "traceparent"), None)


def _batch_id(keys: list[str]) -> str:
    """A batch's `webhook-id`: the same for the same events, so a batch sent again whole carries it again."""
    return "batch." + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:32]
