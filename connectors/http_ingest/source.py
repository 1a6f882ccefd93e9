"""Source: CloudEvents POSTed by municipal systems to `/events`, into `samband-ingest`.

Per request: bearer token -> system (401 if none) -> the events of the request
(connectors.http_ingest.binding) -> each must name a catalog type the system is granted (403)
and be a valid record (400, with the invalid events dead-lettered) -> all are sent as Avro
wire values keyed by event id, and 202 is answered only once Kafka acknowledged every one
(acks=all). No acknowledgement within `produce_timeout_s`, or a Kafka error: 503 with
Retry-After. A request is all or nothing for the client; after a 503 some of its events may
still arrive, and a resend with the same ids is deduplicated by ingest.

There is no bookmark: a push source's position is its clients' (an event not answered 202
is sent again by its system).
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from aiokafka.errors import KafkaError

from connectors.api import OutputRecord, Source
from connectors.dead_letters import DeadLetter
from connectors.http_ingest.binding import events_from
from connectors.http_ingest.config import Authenticator, HttpIngestConfig, SourceSystem
from connectors.http_ingest.events import EventEncoder
from connectors.http_ingest.openapi import openapi_document
from connectors.http_ingest.problems import Problem, Refused, body
from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.registry import CatalogRegistry
from schemas.scrub import scrub_cloudevent

SYSTEM_HEADER = "samband-http-system"


class HttpIngestSource(Source):
    """Serves POST /events (CloudEvents, structured, batch or binary) and GET /openapi.json."""

    Config = HttpIngestConfig
    description = "HTTP ingest: municipal systems POST CloudEvents to /events -> samband-ingest"
    config: HttpIngestConfig

    async def start(self) -> None:
        self.auth = Authenticator(self.config.systems)
        self.encoder = EventEncoder(Codec(CatalogRegistry(catalog())), self.config.ignore_unknown)
        self.openapi = openapi_document(self.config.max_batch)
        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.router.add_post("/events", self._post_events)
        app.router.add_get("/openapi.json", self._get_openapi)
        self._runner = web.AppRunner(app, access_log=None)  # our own request log carries no path data
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.log.info("http_ingest.listening", host=self.config.host, port=self.port)

    async def run(self) -> None:
        await self.stopping.wait()

    async def stop(self) -> None:
        if getattr(self, "_runner", None) is not None:
            await self._runner.cleanup()

    async def _get_openapi(self, _request: web.Request) -> web.Response:
        return web.json_response(self.openapi)

    async def _post_events(self, request: web.Request) -> web.Response:
        system = self.auth.system(request.headers.get("Authorization"))
        if system is None:
            self.log.info("http_ingest.refused", status=401)
            problem = Problem("auth.token", "Authorization", "a valid bearer token is required")
            return _answer(401, [problem], {"WWW-Authenticate": 'Bearer realm="samband"'})
        try:
            raw = await request.read()
            events = events_from(request.content_type, request.headers, raw, self.config.max_batch)
            records = await self._records(system, events)
        except web.HTTPRequestEntityTooLarge:
            return _answer(
                413, [Problem("request.too_large", "body", f"the body exceeds {self.config.max_body_bytes} bytes")]
            )
        except Refused as refused:
            self.log.info("http_ingest.refused", system=system.name, status=refused.status,
                          codes=sorted({p.code for p in refused.problems}))  # fmt: skip
            return _answer(refused.status, refused.problems)
        headers = [(SYSTEM_HEADER, system.name.encode())]
        if traceparent := request.headers.get("traceparent"):
            headers.append(("traceparent", traceparent.encode()))
        records = [OutputRecord(r.key, r.value, headers) for r in records]
        try:
            await asyncio.wait_for(self.context.output.send(records), self.config.produce_timeout_s)
        except (TimeoutError, KafkaError) as exc:
            self.log.warning(
                "http_ingest.unavailable", system=system.name, events=len(records), error=type(exc).__name__
            )
            problem = Problem(
                "kafka.unavailable", "", "the event bus did not confirm the write; retry with the same event ids"
            )
            return _answer(503, [problem], {"Retry-After": str(self.config.retry_after_s)})
        ids = [r.key for r in records]
        self.log.info("http_ingest.accepted", system=system.name, events=len(ids), event_ids=ids[:10])
        return web.json_response({"accepted": ids}, status=202)

    async def _records(self, system: SourceSystem, events: list) -> list[OutputRecord]:
        """One record per event, or Refused: 403 if any type is not granted, else 400 if any is invalid."""
        indexed = len(events) > 1
        denied, invalid, records = [], [], []
        for index, event in enumerate(events):
            at = index if indexed else None
            if not isinstance(event, dict):
                invalid.append((event, [Problem("cloudevent.invalid", "", "an event is a JSON object").at(at)]))
                continue
            if (problem := self.encoder.not_a_cloudevent(event)) is not None:
                invalid.append((event, [problem.at(at)]))
                continue
            event_type = self.encoder.event_type(event)
            if event_type is None:
                invalid.append(
                    (event, [Problem("event.unknown_type", "type", "type names no catalog event type").at(at)])
                )
            elif event_type not in system.event_types:
                denied.append(
                    Problem("auth.type_not_granted", "type", f"{system.name} may not publish {event_type}").at(at)
                )
            else:
                try:
                    value = self.encoder.encode(event_type, event)  # checks that id is a non-empty string
                    records.append(OutputRecord(event["id"], value))
                except Refused as refused:
                    invalid.append((event, [p.at(at) for p in refused.problems]))
        if denied:
            raise Refused(denied, 403)
        if invalid:
            await self._dead_letter(invalid)
            raise Refused([p for _, problems in invalid for p in problems], 400)
        return records

    async def _dead_letter(self, invalid: list[tuple[object, list[Problem]]]) -> None:
        """Keep refused events for operators; a Kafka failure here does not change the 400."""
        sends = []
        for event, problems in invalid:
            key = event.get("id") if isinstance(event, dict) else None
            key = key if isinstance(key, str) else None
            summary = ", ".join(f"{p.field}: {p.code}" for p in problems)
            scrubbed = scrub_cloudevent(event)  # a strengt fortrolig person's address is not kept, sealed or not
            letter = DeadLetter(
                problems[0].code,
                f"refused by HTTP ingest ({summary})"[:500],
                "source",
                event_id=key,
                scrubbed="address" if scrubbed is not None else None,
            )
            value = json.dumps(scrubbed if scrubbed is not None else event, ensure_ascii=False).encode()
            sends.append(self.context.dead_letters.send(key.encode() if key is not None else None, value, letter))
        try:
            await asyncio.wait_for(asyncio.gather(*sends), self.config.produce_timeout_s)
        except (TimeoutError, KafkaError) as exc:
            self.log.warning("http_ingest.dead_letter_failed", events=len(sends), error=type(exc).__name__)


def _answer(status: int, problems: list[Problem], headers: dict | None = None) -> web.Response:
    return web.json_response(body(problems), status=status, headers=headers)
