"""The compiled Avro reader (schemas/compiled_reader.py) reads exactly what fastavro reads, and fails alike."""

from __future__ import annotations

from io import BytesIO

import fastavro
import pytest
from fastavro.utils import generate_many

from schemas.catalog import catalog
from schemas.codec import Codec, WireFormatError
from schemas.compiled_reader import compile_reader
from schemas.examples import example
from schemas.registry import CatalogRegistry

ALL_TYPES = {
    "type": "record",
    "name": "test.AllTypes",
    "fields": [
        {"name": "nothing", "type": "null"},
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "single", "type": "float"},
        {"name": "double", "type": "double"},
        {"name": "raw", "type": "bytes"},
        {"name": "text", "type": "string"},
        {"name": "colour", "type": {"type": "enum", "name": "test.Colour", "symbols": ["red", "green", "blue"]}},
        {"name": "digest", "type": {"type": "fixed", "name": "test.Digest", "size": 4}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "counts", "type": {"type": "map", "values": "long"}},
        {"name": "nested", "type": {"type": "array", "items": {"type": "map", "values": ["null", "test.Colour"]}}},
        {"name": "choice", "type": ["null", "string", "long", "test.Digest"]},
        {"name": "when", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {
            "name": "inner",
            "type": [
                "null",
                {"type": "record", "name": "test.Inner", "fields": [{"name": "again", "type": ["null", "test.Inner"]}]},
            ],
        },
    ],
}


def _write(schema: dict, record: dict) -> bytes:
    out = BytesIO()
    out.write(b"\x00\x00\x00\x00\x01")  # a wire header: the compiled reader starts at offset 5
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def _fastavro_read(schema: dict, message: bytes) -> dict:
    return fastavro.schemaless_reader(BytesIO(message[5:]), schema, None)


def _schemas() -> list:
    cat = catalog()
    return [
        pytest.param(fastavro.parse_schema(version.schema), id=f"{event_type}-v{version.version}")
        for event_type in cat.event_types()
        for version in cat.released(event_type)
    ] + [pytest.param(fastavro.parse_schema(ALL_TYPES), id="all-types")]


@pytest.mark.parametrize("schema", _schemas())
def test_reads_what_fastavro_reads_for_every_catalog_schema_and_type(schema):
    read = compile_reader(schema)
    assert read is not None
    for record in generate_many(schema, 300):
        message = _write(schema, record)
        assert read(message, 5) == _fastavro_read(schema, message)


def test_reads_extreme_numbers_unicode_and_logical_values_as_fastavro_does():
    schema = fastavro.parse_schema(ALL_TYPES)
    read = compile_reader(schema)
    for big, small, text in [(-(2**63), -(2**31), "æøå ÆØÅ 𝄞"), (2**63 - 1, 2**31 - 1, ""), (0, -1, "x" * 300)]:
        record = next(iter(generate_many(schema, 1)))
        record.update(big=big, small=small, text=text, when=-(2**40), inner={"again": {"again": None}})
        message = _write(schema, record)
        decoded = read(message, 5)
        assert decoded == _fastavro_read(schema, message)
        assert (decoded["big"], decoded["small"], decoded["text"]) == (big, small, text)


def test_reads_array_blocks_with_a_negative_count_and_a_byte_size():
    # Avro lets a writer give a block's count negated, followed by the block's size in bytes.
    schema = fastavro.parse_schema({"type": "array", "items": "string"})
    body = bytes([0x03, 0x08, 0x02]) + b"a" + bytes([0x02]) + b"b" + bytes([0x02, 0x02]) + b"c" + bytes([0x00])
    message = b"\x00\x00\x00\x00\x01" + body
    assert compile_reader(schema)(message, 5) == ["a", "b", "c"] == _fastavro_read(schema, message)


@pytest.mark.parametrize("event_type", catalog().event_types())
def test_every_truncation_of_a_catalog_message_is_wire_truncated(event_type):
    codec = Codec(CatalogRegistry(catalog()))
    message = codec.encode(example(event_type), codec.current_id(event_type))
    for end in range(5, len(message)):
        with pytest.raises(WireFormatError) as raised:
            codec.decode(message[:end])
        assert raised.value.reason == "wire.truncated", end


def test_an_enum_of_more_than_64_symbols_reads_its_two_byte_indexes():
    schema = fastavro.parse_schema({"type": "enum", "name": "test.Kommune", "symbols": [f"k{i}" for i in range(100)]})
    read = compile_reader(schema)
    for symbol in ("k0", "k63", "k64", "k99"):
        message = _write(schema, symbol)
        assert read(message, 5) == symbol == _fastavro_read(schema, message)


@pytest.mark.parametrize(
    "body, what",
    [
        (bytes([0x06]), "enum index 3 of 3 symbols"),
        (bytes([0x01]), "enum index -1"),
    ],
)
def test_an_enum_index_out_of_range_is_a_value_error(body, what):
    schema = fastavro.parse_schema({"type": "enum", "name": "E", "symbols": ["a", "b", "c"]})
    with pytest.raises(ValueError):
        compile_reader(schema)(b"\x00\x00\x00\x00\x01" + body, 5)


@pytest.mark.parametrize(
    "body",
    [bytes([0x04]), bytes([0x01]), bytes([0x80, 0x00]), bytes([0x02, 0x03]), bytes([0x02] + [0xFF] * 11)],
    ids=[
        "union branch 2 of 2",
        "union branch -1",
        "union branch 0 in two bytes",
        "negative length",
        "length varint of 11 bytes",
    ],
)
def test_a_corrupt_body_is_a_value_error(body):
    schema = fastavro.parse_schema(["null", "string"])
    with pytest.raises(ValueError):
        compile_reader(schema)(b"\x00\x00\x00\x00\x01" + body, 5)


def test_a_schema_with_a_logical_type_not_compiled_falls_back_to_fastavro():
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "test.WithUuid",
            "fields": [{"name": "id", "type": {"type": "string", "logicalType": "uuid"}}],
        }
    )
    assert compile_reader(schema) is None
