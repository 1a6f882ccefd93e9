"""Codec: round trips, schema evolution, projections, wire-format errors, caching."""

import fastavro
import pytest

from schemas.catalog import catalog
from schemas.codec import Codec, WireFormatError, schema_id_of
from schemas.examples import example, example_types
from schemas.registry import CatalogRegistry


@pytest.fixture
def codec():
    return Codec(CatalogRegistry(catalog()))


@pytest.mark.parametrize("event_type", example_types())
def test_every_event_type_round_trips(codec, event_type):
    record = example(event_type)
    data = codec.encode(record, codec.current_id(event_type))
    assert codec.decode(data) == record


def test_message_starts_with_magic_byte_and_big_endian_schema_id(codec):
    schema_id = codec.current_id("Death")
    data = codec.encode(example("Death"), schema_id)
    assert data[0] == 0
    assert data[1:5] == schema_id.to_bytes(4, "big")
    assert schema_id_of(data) == schema_id


def test_message_written_with_released_v1_decodes_with_the_current_reader(codec):
    v1 = catalog().released("Move")[0]
    old = example("Move")
    del old["cause"], old["envelope"]["correlationId"]  # fields added in v2
    data = codec.encode(old, v1.id)
    current_reader = fastavro.parse_schema(catalog().current("Move").schema)
    decoded = codec.decode(data, reader=current_reader)
    assert decoded["cause"] == "relocation"
    assert decoded["envelope"]["correlationId"] is None
    assert decoded["newAddress"] == old["newAddress"]


def test_projection_reader_drops_the_fields_not_granted(codec):
    data = codec.encode(example("Move"), codec.current_id("Move"))
    reader = catalog().projection_schema("Move", ["envelope.id", "envelope.kommunenummer", "scope"])
    assert codec.decode(data, reader=reader) == {
        "envelope": {"id": example("Move")["envelope"]["id"], "kommunenummer": ["0301", "4601"]},
        "scope": "betweenKommuner",
    }


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x00\x01", "wire.truncated"),
        (b"\x01\x00\x00\x00\x01\x02", "wire.magic"),
        (b"\x00\x7f\xff\xff\xff\x02", "wire.unknown_schema_id"),
    ],
)
def test_bad_headers_raise_wire_format_errors(codec, data, reason):
    with pytest.raises(WireFormatError) as raised:
        codec.decode(data)
    assert raised.value.reason == reason


def test_truncated_body_raises_wire_truncated(codec):
    data = codec.encode(example("Move"), codec.current_id("Move"))
    with pytest.raises(WireFormatError) as raised:
        codec.decode(data[:20])
    assert raised.value.reason == "wire.truncated"


def test_wire_errors_never_echo_event_data(codec):
    data = codec.encode(example("Move"), codec.current_id("Move"))
    with pytest.raises(WireFormatError) as raised:
        codec.decode(data[:40])
    assert "0385" not in str(raised.value) and "Testveien" not in str(raised.value)


def test_schemas_are_parsed_once_per_id(codec, monkeypatch):
    calls = []
    real_parse = fastavro.parse_schema
    monkeypatch.setattr(
        fastavro, "parse_schema", lambda schema, *a, **kw: calls.append(1) or real_parse(schema, *a, **kw)
    )
    schema_id = codec.current_id("Death")
    for _ in range(5):
        codec.decode(codec.encode(example("Death"), schema_id))
    assert len(calls) == 1


def test_reader_that_cannot_read_the_writer_is_a_reader_mismatch(codec):
    data = codec.encode(example("Death"), codec.current_id("Death"))
    reader = fastavro.parse_schema(
        {
            "type": "record",
            "name": "Death",
            "namespace": "no.samband.events",
            "fields": [{"name": "mandatory", "type": "string"}],
        }
    )
    with pytest.raises(WireFormatError) as raised:
        codec.decode(data, reader=reader)
    assert raised.value.reason == "wire.reader_mismatch"
