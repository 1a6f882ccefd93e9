"""Synthetic CloudEvents and a running HTTP ingest source for the HTTP ingest tests."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from datetime import date, datetime

from support import dead_letter_key, pseudonym_key

from connectors.http_ingest.openapi import EVENT_TYPES
from connectors.http_ingest.source import HttpIngestSource
from connectors.runtime import open_connector
from schemas.catalog import EVENTS_NAMESPACE
from schemas.examples import example

TOKENS = {"bergen-barnevern": "synthetic-token-bergen-0001", "oslo-skole": "synthetic-token-oslo-00002",
          "every-type": "synthetic-token-every-type"}  # fmt: skip
GRANTS = {"bergen-barnevern": ["Move", "Birth"], "oslo-skole": ["Death"], "every-type": EVENT_TYPES}
EXTENSIONS = {"person": "person", "kommunenummer": "kommunenummer", "addressProtection": "addressprotection",
              "changeKind": "changekind", "correctsEventId": "correctseventid", "sequenceNumber": "sequencenumber",
              "correlationId": "correlationid"}  # fmt: skip


def token_env(name: str) -> str:
    return "SAMBAND_TEST_HTTP_TOKEN_" + name.upper().replace("-", "_")


def ingest_config(port: int = 0, **overrides) -> dict:
    systems = [{"name": n, "token_ref": f"env:{token_env(n)}", "event_types": GRANTS[n]} for n in TOKENS]
    return {"port": port, "systems": systems, **overrides}


def set_tokens(monkeypatch) -> None:
    for name, token in TOKENS.items():
        monkeypatch.setenv(token_env(name), token)


def auth(system: str = "bergen-barnevern") -> dict:
    return {"Authorization": f"Bearer {TOKENS[system]}"}


def cloudevent(event_type: str = "Move", **changes) -> dict:
    """A valid CloudEvent of the catalog example (synthetic identity numbers) with a fresh id."""
    record = example(event_type)
    envelope = record.pop("envelope")
    event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "urn:no:kommune:4601:barnevern",
             "type": f"{EVENTS_NAMESPACE}.{event_type}", "time": envelope["time"].isoformat(),
             "subject": envelope["subject"], "datacontenttype": "application/json",
             "data": {k: _json(v) for k, v in record.items()}}  # fmt: skip
    event |= {ext: envelope[field] for field, ext in EXTENSIONS.items() if envelope[field] is not None}
    return event | changes


def binary(event: dict) -> tuple[dict, dict]:
    """(headers, data) of the event in the binary HTTP binding."""
    headers = {"Content-Type": "application/json"}
    for name, value in event.items():
        if name in ("data", "datacontenttype"):
            continue
        headers[f"ce-{name}"] = ",".join(value) if isinstance(value, list) else str(value)
    return headers, event["data"]


def _json(value):
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


@asynccontextmanager
async def running_ingest(bootstrap: str, app_id: str, config: dict, instance: str = "http-test"):
    """The HTTP ingest source serving on 127.0.0.1; yields it (its `port` is the bound port)."""
    async with open_connector(
        HttpIngestSource,
        instance,
        config,
        bootstrap=bootstrap,
        app_id=app_id,
        pseudonym_key=pseudonym_key(),
        dead_letter_key=dead_letter_key(),
    ) as source:
        task = asyncio.create_task(source.run())
        try:
            yield source
        finally:
            source.stopping.set()
            await asyncio.wait_for(task, 10)
