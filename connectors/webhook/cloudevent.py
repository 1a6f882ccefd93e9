"""CloudEvents 1.0 over HTTP: structured mode (the whole event as JSON), binary mode, or batch mode.

Binary mode puts each context attribute in a `ce-<name>` header and the data in the body;
`datacontenttype` becomes `Content-Type` (HTTP protocol binding 1.0, section 3.1). Batch mode
(section 3.3) is a JSON array of structured events.
"""

from __future__ import annotations

from urllib.parse import quote

import orjson

STRUCTURED = "structured"
BINARY = "binary"
MODES = (STRUCTURED, BINARY)
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json; charset=utf-8"
# Printable ASCII except space, double quote and percent pass unencoded (binding 3.1.3.2).
_SAFE = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in ' "%')


def _json(value) -> bytes:
    return orjson.dumps(value)  # compact UTF-8, as json.dumps(separators=(",", ":"), ensure_ascii=False)


def encode(event: dict, mode: str = STRUCTURED) -> tuple[dict[str, str], bytes]:
    """HTTP headers and body for one CloudEvent (a dict with specversion, id, source, type, ...)."""
    if mode == STRUCTURED:
        return {"Content-Type": STRUCTURED_CONTENT_TYPE}, _json(event)
    if mode != BINARY:
        raise ValueError(f"CloudEvents mode must be one of {MODES}, not {mode!r}")
    headers = {"Content-Type": event.get("datacontenttype", "application/json")}
    for name, value in event.items():
        if name not in ("data", "datacontenttype", "data_base64"):
            headers[f"ce-{name}"] = quote(str(value), safe=_SAFE)
    return headers, _json(event.get("data"))


def batch_body(events: list[bytes]) -> bytes:
    """The batch-mode body of the encoded `events` (each `orjson.dumps` of a structured event)."""
    return b"[" + b",".join(events) + b"]"


def batch_bodies(events: list[bytes], max_bytes: int) -> list[tuple[int, int, bytes]]:
    """Batch-mode bodies of the encoded `events` (each `orjson.dumps` of a structured event), in
    order, each at most `max_bytes` unless one event alone is larger: (first index, end index, body)."""
    bodies: list[tuple[int, int, bytes]] = []
    start, size = 0, 2  # the brackets
    for i, encoded in enumerate(events):
        grown = size + len(encoded) + (i > start)  # a comma before every event but the first
        if i > start and grown > max_bytes:
            bodies.append((start, i, batch_body(events[start:i])))
            start, grown = i, 2 + len(encoded)
        size = grown
    if start < len(events):
        bodies.append((start, len(events), batch_body(events[start:])))
    return bodies
