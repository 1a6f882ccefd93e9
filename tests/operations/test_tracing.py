"""W3C traceparent: parsing per the spec (invalid values start a new trace), child spans, Kafka and HTTP headers."""

from __future__ import annotations

import re

import pytest
from multidict import CIMultiDict

from agents.tracing import (
    TraceParent,
    child_kafka_headers,
    continue_trace,
    from_http_headers,
    from_kafka_headers,
    http_header,
    new_trace,
    parse,
    with_kafka_header,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"
FORMAT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]")


def test_parses_the_spec_example():
    assert parse(VALID) == TraceParent(TRACE_ID, PARENT_ID, 0x01)
    assert parse(f"00-{TRACE_ID}-{PARENT_ID}-00").sampled is False
    assert parse(f" {VALID}\t") == TraceParent(TRACE_ID, PARENT_ID, 0x01)  # optional whitespace around a header value


@pytest.mark.parametrize(
    "value",
    [
        f"00-{'0' * 32}-{PARENT_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",  # trace id too short
        f"00-{TRACE_ID}0-{PARENT_ID}-01",  # trace id too long
        f"00-{TRACE_ID}-{PARENT_ID[:-1]}-01",  # parent id too short
        f"00-{TRACE_ID}-{PARENT_ID}-1",  # flags too short
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",  # upper-case hex
        f"00-{TRACE_ID[:-1]}g-{PARENT_ID}-01",  # not hex
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # forbidden version
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",  # version 00 has exactly four fields
        f"01-{TRACE_ID}-{PARENT_ID}-01x",  # a later version's extra fields come after a dash
        f"00_{TRACE_ID}_{PARENT_ID}_01",
        "",
    ],
)
def test_invalid_values_are_refused(value):
    assert parse(value) is None


def test_a_later_version_is_read_by_its_first_four_fields():
    assert parse(f"cc-{TRACE_ID}-{PARENT_ID}-01-what-the-future-holds") == TraceParent(TRACE_ID, PARENT_ID, 0x01)


def test_child_keeps_the_trace_and_sampled_flag_with_a_new_span_id_and_writes_version_00():
    parent = parse(f"cc-{TRACE_ID}-{PARENT_ID}-09-more")  # sampled plus an unknown flag bit
    child = parent.child()
    assert child.trace_id == TRACE_ID
    assert child.parent_id not in (PARENT_ID, "0" * 16)
    assert child.header_value == f"00-{TRACE_ID}-{child.parent_id}-01"  # unknown flag bits are not passed on


def test_invalid_or_absent_parent_starts_a_new_trace():
    fresh = continue_trace(parse(f"00-{'0' * 32}-{PARENT_ID}-01"))
    assert FORMAT.fullmatch(fresh.header_value)
    assert fresh.trace_id != "0" * 32 and fresh.sampled
    assert new_trace().trace_id != new_trace().trace_id
    assert continue_trace(parse(VALID)).trace_id == TRACE_ID


def test_kafka_headers_read_and_written():
    headers = [("samband-source", b"folkeregister"), ("traceparent", VALID.encode())]
    parent = from_kafka_headers(headers)
    assert parent == TraceParent(TRACE_ID, PARENT_ID, 0x01)

    written = with_kafka_header(headers, parent.child())
    assert [key for key, _ in written] == ["samband-source", "traceparent"]
    assert from_kafka_headers(written).trace_id == TRACE_ID
    assert from_kafka_headers(written).parent_id != PARENT_ID

    assert from_kafka_headers(None) is None
    assert from_kafka_headers([("traceparent", b"\xff\xfe")]) is None
    assert from_kafka_headers([("traceparent", VALID.encode()), ("traceparent", VALID.encode())]) is None  # given twice


@pytest.mark.parametrize(
    "headers",
    [
        [("samband-source", b"folkeregister"), ("traceparent", VALID.encode()), ("x", b"y")],
        [("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-00".encode())],  # not sampled
        [("traceparent", f"cc-{TRACE_ID}-{PARENT_ID}-09-more".encode())],  # a later version, unknown flag bits
        [("traceparent", f" {VALID}\t".encode())],
        [("traceparent", VALID.encode()), ("traceparent", VALID.encode())],  # given twice: a new trace
        [("traceparent", b"\xff\xfe"), ("samband-source", b"a")],
        [("traceparent", None), ("samband-source", b"a")],
        [("samband-source", b"a")],
        [],
        None,
    ],
)
def test_child_kafka_headers_is_the_child_span_written_over_the_parent(headers):
    written = child_kafka_headers(headers)
    expected = with_kafka_header(headers, continue_trace(from_kafka_headers(headers)))
    assert [key for key, _ in written] == [key for key, _ in expected]
    assert [(k, v) for k, v in written if k != "traceparent"] == [(k, v) for k, v in expected if k != "traceparent"]
    child, reference = from_kafka_headers(written), from_kafka_headers(expected)
    assert FORMAT.fullmatch(dict(written)["traceparent"].decode())
    assert child.flags == reference.flags
    parent = from_kafka_headers(headers)
    if parent is None:  # a new trace each time
        assert child.trace_id not in (reference.trace_id, TRACE_ID)
    else:
        assert child.trace_id == reference.trace_id == TRACE_ID and child.parent_id != PARENT_ID


def test_http_headers_read_case_insensitively_and_written():
    assert from_http_headers(CIMultiDict({"TraceParent": VALID})) == TraceParent(TRACE_ID, PARENT_ID, 0x01)
    assert from_http_headers({"Traceparent": VALID}) == TraceParent(TRACE_ID, PARENT_ID, 0x01)
    assert from_http_headers(CIMultiDict([("traceparent", VALID), ("traceparent", VALID)])) is None  # given twice
    assert from_http_headers({}) is None
    trace = new_trace(sampled=False)
    assert http_header(trace) == {"traceparent": f"00-{trace.trace_id}-{trace.parent_id}-00"}
