"""W3C Trace Context (`traceparent`, https://www.w3.org/TR/trace-context/) in Kafka and HTTP headers.

    parent = from_kafka_headers(record.headers)           # None when absent or invalid
    span = continue_trace(parent)                          # child of the caller's, or a new trace
    headers = with_kafka_header(record.headers, span)      # list[(str, bytes)] for the next topic
    http = {**http_header(span), ...}                      # for the webhook POST
    log.info("delivered", trace_id=span.trace_id)

`traceparent` is `00-<trace id: 32 hex>-<parent id: 16 hex>-<flags: 2 hex>`. Per the spec a
value that does not parse (wrong length, upper-case or non-hex digits, all-zero ids, version
`ff`, the header given twice) is ignored and a new trace is started; a higher version is read
by its first four fields. Only version 00 is written, with the sampled flag carried over and
the other flag bits zero.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

HEADER = "traceparent"
SAMPLED = 0x01

_FIELDS = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_VERSION_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16


class TraceParent(NamedTuple):  # a tuple: built twice per routed event, a frozen dataclass costs 3x
    trace_id: str
    parent_id: str  # the span id of the sender
    flags: int = SAMPLED

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED)

    @property
    def header_value(self) -> str:
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags & SAMPLED:02x}"

    def child(self) -> TraceParent:
        """This trace, one step on: a new span id, the sampled flag kept."""
        return TraceParent(self.trace_id, new_span_id(), self.flags & SAMPLED)


# Ids must be random and unique, not secret (W3C Trace Context): the PRNG, not a urandom syscall per id.
def new_trace_id() -> str:
    while (value := f"{random.getrandbits(128):032x}") == _ZERO_TRACE_ID:
        pass
    return value


def new_span_id() -> str:
    while (value := f"{random.getrandbits(64):016x}") == _ZERO_PARENT_ID:
        pass
    return value


def new_trace(sampled: bool = True) -> TraceParent:
    return TraceParent(new_trace_id(), new_span_id(), SAMPLED if sampled else 0)


def continue_trace(parent: TraceParent | None) -> TraceParent:
    """A child span of `parent`, or the root of a new trace when there is none (or it was invalid)."""
    return parent.child() if parent is not None else new_trace()


def parse(value: str) -> TraceParent | None:
    """The traceparent in `value`, or None when it is not valid per the W3C spec."""
    if len(value) == 55 and (match := _VERSION_00.fullmatch(value)):  # the usual case, cheaply
        trace_id, parent_id, flags = match.groups()
    else:
        value = value.strip(" \t")
        match = _FIELDS.match(value)
        if match is None:
            return None
        version, trace_id, parent_id, flags = match.groups()
        if version == "ff":
            return None
        if version == "00" and len(value) != 55:
            return None
        if len(value) > 55 and value[55] != "-":  # a later version may append fields, after a dash
            return None
    if trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_PARENT_ID:
        return None
    return TraceParent(trace_id, parent_id, int(flags, 16))


def _only(values: list[str]) -> TraceParent | None:
    return parse(values[0]) if len(values) == 1 else None  # absent, or given twice: no usable parent


def from_kafka_headers(headers: Iterable[tuple[str, bytes]] | None) -> TraceParent | None:
    values = [value.decode("ascii", "replace") for key, value in headers or () if key == HEADER and value is not None]
    return _only(values)


def with_kafka_header(headers: Iterable[tuple[str, bytes]] | None, trace: TraceParent) -> list[tuple[str, bytes]]:
    """`headers` with `traceparent` set to `trace` (replacing any earlier one), other headers kept in order."""
    return [(key, value) for key, value in headers or () if key != HEADER] + [
        (HEADER, trace.header_value.encode("ascii"))
    ]


def child_kafka_headers(headers: Iterable[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
    """`with_kafka_header(headers, continue_trace(from_kafka_headers(headers)))` in one pass over the
    headers: what a stage writes on the records it makes of a record (the router, once per event)."""
    kept, values = [], []
    for key, value in headers or ():
        if key != HEADER:
            kept.append((key, value))
        elif value is not None:
            values.append(value.decode("ascii", "replace"))
    parent = _only(values)
    if parent is None:  # a new, sampled trace, written in one step; an all-zero id (invalid, odds 2^-64) is made 1
        kept.append((HEADER, b"00-%032x-%016x-01" % (random.getrandbits(128) or 1, random.getrandbits(64) or 1)))
    else:
        kept.append((HEADER, parent.child().header_value.encode("ascii")))
    return kept


def from_http_headers(headers: Mapping[str, str]) -> TraceParent | None:
    """From an HTTP request's headers (case-insensitive name); aiohttp's multidict gives every value."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return _only(list(getall(HEADER, [])))
    return _only([value for key, value in headers.items() if key.lower() == HEADER])


def http_header(trace: TraceParent) -> dict[str, str]:
    return {HEADER: trace.header_value}
