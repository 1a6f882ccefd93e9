"""POST signed CloudEvents to one subscriber over a keep-alive connection pool.

One sender per subscriber: its own pool of keep-alive connections (connectors/webhook/http1.py),
limited to `max_concurrency` (a request waits for a free one), so a slow subscriber only ever
occupies its own slots.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable

from yarl import URL

from connectors.webhook import cloudevent
from connectors.webhook.config import WebhookConfig
from connectors.webhook.http1 import Endpoint, ProtocolError
from connectors.webhook.network import AddressRefused, AllowList, GuardedResolver, literal_address
from connectors.webhook.outcome import CONNECTION, TIMEOUT, HttpOutcome, classify
from connectors.webhook.secrets import SecretError, resolve_secret
from connectors.webhook.signing import Signer

USER_AGENT = "samband-webhook/1"


# A subscriber's answer is read up to this much: it only needs to say yes, or echo a challenge.
MAX_RESPONSE_BYTES = 64 * 1024
ADDRESS_REFUSED = "delivery.address_refused"
CHALLENGE_NOT_ECHOED = "delivery.challenge_not_echoed"


class WebhookSender:
    def __init__(self, config: WebhookConfig, allow: AllowList | None = None, secrets_dir: str = ""):
        self.config = config
        self._endpoint: Endpoint | None = None
        self._signer: Signer | None = None  # made at the first request: a missing secret is a retried outcome
        self._url = URL(config.url)  # parsed once, not per request
        self._allow = allow or AllowList()
        self._secrets_dir = secrets_dir
        # A literal address is judged here already, to refuse without connecting; every host, literal
        # or named, is judged again by the resolver on the address connected to (network.py).
        self._refused = (
            self._allow.refusal(self._url.scheme, self._url.host or "")
            if literal_address(self._url.host or "")
            else None
        )

    def _open(self) -> Endpoint:
        if self._endpoint is None:
            self._endpoint = Endpoint(
                self._url,
                self.config.max_concurrency,
                self.config.connect_timeout,
                self.config.read_timeout,
                GuardedResolver(self._allow, self._url.scheme).resolve,
            )
        return self._endpoint

    def request(self, event: dict, msg_id: str, traceparent: str | None = None) -> tuple[dict[str, str], bytes]:
        """Headers and body of the POST for `event` (signed, with the trace context passed on)."""
        headers, body = cloudevent.encode(event, self.config.mode)
        return self._signed(headers, body, msg_id, traceparent), body

    def _signed(self, headers: dict[str, str], body: bytes, msg_id: str, traceparent: str | None) -> dict[str, str]:
        if self._signer is None:
            self._signer = Signer([resolve_secret(ref, self._secrets_dir) for ref in self.config.secret_refs])
        headers["User-Agent"] = USER_AGENT
        headers.update(self._signer.headers(msg_id, int(time.time()), body))
        if traceparent:
            headers["traceparent"] = traceparent
        return headers

    def send(
        self, event: dict, msg_id: str, traceparent: str | None = None, echo: str | None = None
    ) -> Awaitable[HttpOutcome]:
        """One attempt, for the caller to await. Never raises for the subscriber's faults: they
        become an Outcome. With `echo`, a 2xx counts only when the answer's body holds that text
        (the handshake's challenge). A plain function returning the request's coroutine: one
        coroutine level less at each resumption of the hot path."""
        try:
            headers, body = self.request(event, msg_id, traceparent)
        except SecretError as exc:
            # Our configuration, not the event, is at fault: keep the event and try again later.
            return done(HttpOutcome("retry", exc.reason, str(exc)))
        return self._posted(headers, body, echo)

    def send_batch(self, body: bytes, msg_id: str, echo: str | None = None) -> Awaitable[HttpOutcome]:
        """One attempt of a batch-mode body (cloudevent.batch_bodies), signed once as a whole."""
        try:
            headers = self._signed({"Content-Type": cloudevent.BATCH_CONTENT_TYPE}, body, msg_id, None)
        except SecretError as exc:
            return done(HttpOutcome("retry", exc.reason, str(exc)))
        return self._posted(headers, body, echo)

    def _posted(self, headers: dict[str, str], body: bytes, echo: str | None) -> Awaitable[HttpOutcome]:
        if self._refused is not None:
            return done(HttpOutcome("retry", ADDRESS_REFUSED, f"webhook URL refused: {self._refused}"))
        return self._post(headers, body, echo)

    async def _post(self, headers: dict[str, str], body: bytes, echo: str | None) -> HttpOutcome:
        try:
            # never more of the answer than this: a body is no reason to wait
            answer = await self._open().post(headers, body, MAX_RESPONSE_BYTES)
        except TimeoutError:
            return HttpOutcome("retry", TIMEOUT)
        except AddressRefused as exc:
            return HttpOutcome("retry", ADDRESS_REFUSED, str(exc))
        except (OSError, ProtocolError):
            return HttpOutcome("retry", CONNECTION)
        outcome = classify(answer.status, answer.headers.get("retry-after"))
        if echo is not None and outcome.status == "delivered" and echo.encode() not in answer.body:
            return HttpOutcome("retry", CHALLENGE_NOT_ECHOED, "the answer did not echo the challenge", answer.status)
        return outcome

    async def close(self) -> None:
        if self._endpoint is not None:
            await self._endpoint.close()
            self._endpoint = None


async def done(outcome: HttpOutcome) -> HttpOutcome:
    """An outcome decided without a request, as an awaitable like a request's."""
    return outcome
