"""CloudEvents HTTP binding: a request -> the CloudEvents (JSON objects) it carries.

- structured: `Content-Type: application/cloudevents+json`, the body is one event;
- batch: `Content-Type: application/cloudevents-batch+json`, the body is a JSON array of events;
- binary: `ce-*` headers hold the attributes (`ce-specversion` is required), the body is
  `data` as `application/json`. Header values are percent-decoded; `ce-sequencenumber` is
  an integer and `ce-kommunenummer` a comma-separated list.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote

from connectors.http_ingest.problems import Problem, Refused
from schemas import json_text

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
BINARY_DATA = "application/json"
HEADER_PREFIX = "ce-"
BODY_ATTRIBUTES = {"ce-", "ce-data", "ce-datacontenttype"}  # given by the body and Content-Type


def events_from(content_type: str, headers: Mapping[str, str], body: bytes, max_batch: int) -> list:
    """The request's events (each should be a JSON object; the caller checks); raises Refused."""
    if content_type == STRUCTURED:
        return [_json(body)]
    if content_type == BATCH:
        events = _json(body)
        if not isinstance(events, list) or not events:
            raise Refused([Problem("request.batch", "body", "a batch is a non-empty JSON array of events")])
        if len(events) > max_batch:
            raise Refused(
                [Problem("request.batch_too_large", "body", f"a batch holds at most {max_batch} events")], 413
            )
        return events
    if content_type == BINARY_DATA and _header(headers, "specversion") is not None:
        return [_from_binary(headers, _json(body))]
    raise Refused(
        [
            Problem(
                "request.content_type", "Content-Type", f"use {STRUCTURED}, {BATCH}, or {BINARY_DATA} with ce-* headers"
            )
        ],
        415,
    )


def _json(body: bytes):
    try:
        return json_text.loads(body)
    except ValueError as exc:
        raise Refused([Problem("request.json", "body", f"the body is not valid JSON: {exc}")]) from None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(HEADER_PREFIX + name)
    return unquote(value) if value is not None else None


def _from_binary(headers: Mapping[str, str], data) -> dict:
    event: dict = {"data": data, "datacontenttype": BINARY_DATA}
    for key, value in headers.items():
        name = key.lower()
        if name.startswith(HEADER_PREFIX) and name not in BODY_ATTRIBUTES:
            event[name.removeprefix(HEADER_PREFIX)] = unquote(value)
    if "sequencenumber" in event:
        try:
            event["sequencenumber"] = int(event["sequencenumber"])
        except ValueError:
            raise Refused(
                [Problem("json.field_type", "sequencenumber", "ce-sequencenumber must be an integer")]
            ) from None
    if "kommunenummer" in event:
        event["kommunenummer"] = [k.strip() for k in event["kommunenummer"].split(",") if k.strip()]
    return event
