"""Avro codec in the Confluent wire format: byte 0, the schema id (4 bytes big-endian), the Avro body.

    codec = Codec(CatalogRegistry(catalog()))
    data = codec.encode(record, codec.current_id("Move"))
    record = codec.decode(data)                                   # as written
    record = codec.decode(data, reader=cat.projection_schema(...)) # resolved to a reader schema

Writer schemas are parsed once per id and the 5-byte headers built once per id; an id the
codec has not seen is fetched from the registry once. Reading as written (no `reader`) uses a
reader compiled for the writer schema (schemas/compiled_reader.py); resolving to a reader
schema uses fastavro. A malformed message raises
WireFormatError with a stable `reason` (wire.truncated, wire.magic, wire.unknown_schema_id,
wire.corrupt, wire.reader_mismatch) that the router dead-letters on.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from io import BytesIO
from typing import Protocol, cast

import fastavro
from fastavro.read import SchemaResolutionError

from schemas.compiled_reader import compile_reader

MAGIC = 0
HEADER_SIZE = 5


class WireFormatError(ValueError):
    """A message that is not a decodable Samband/Confluent Avro message. The message holds no event data."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class SchemaNotFound(LookupError):
    """The registry has no schema with this id."""


class SchemaSource(Protocol):
    def schema_by_id(self, schema_id: int) -> dict: ...

    def current_id(self, subject: str) -> int: ...


class Codec:
    def __init__(self, registry: SchemaSource):
        self._registry = registry
        self._writers: dict[int, dict] = {}
        self._readers: dict[int, Callable[[bytes, int], dict]] = {}  # compiled, for reading as written
        self._headers: dict[int, bytes] = {}

    def current_id(self, name: str) -> int:
        """Schema id of the current version of an event type (`Move`) or subject."""
        return self._registry.current_id(name)

    def writer_schema(self, schema_id: int) -> dict:
        writer = self._writers.get(schema_id)
        if writer is None:
            try:
                schema = self._registry.schema_by_id(schema_id)
            except SchemaNotFound:
                raise WireFormatError("wire.unknown_schema_id", f"no schema with id {schema_id}") from None
            writer = self._writers[schema_id] = cast(dict, fastavro.parse_schema(schema))
            self._readers[schema_id] = compile_reader(writer) or partial(_fastavro_read, writer, None)
            self._headers[schema_id] = bytes([MAGIC]) + schema_id.to_bytes(4, "big")
        return writer

    def encode(self, record: dict, schema_id: int) -> bytes:
        writer = self._writers.get(schema_id) or self.writer_schema(schema_id)
        out = BytesIO()
        out.write(self._headers[schema_id])
        fastavro.schemaless_writer(out, writer, record)
        return out.getvalue()

    def decode(self, data: bytes, reader: dict | None = None) -> dict:
        """Decode a message; `reader` is a fastavro-parsed reader schema (e.g. a projection)."""
        schema_id = schema_id_of(data)
        writer = self._writers.get(schema_id) or self.writer_schema(schema_id)
        try:
            if reader is None:
                return self._readers[schema_id](data, HEADER_SIZE)
            return _fastavro_read(writer, reader, data, HEADER_SIZE)
        except SchemaResolutionError:
            raise WireFormatError("wire.reader_mismatch", f"reader schema cannot read schema id {schema_id}") from None
        except EOFError:
            raise WireFormatError("wire.truncated", f"message body ends early for schema id {schema_id}") from None
        except (ValueError, IndexError, KeyError, UnicodeDecodeError, OverflowError) as exc:
            raise WireFormatError(
                "wire.corrupt", f"cannot decode with schema id {schema_id}: {type(exc).__name__}"
            ) from None


def _fastavro_read(writer: dict, reader: dict | None, data: bytes, offset: int) -> dict:
    body = BytesIO(data)
    body.seek(offset)
    return cast(dict, fastavro.schemaless_reader(body, writer, reader))


def schema_id_of(data: bytes) -> int:
    """The schema id of a message, checking the header only."""
    if len(data) < HEADER_SIZE:
        raise WireFormatError("wire.truncated", f"message of {len(data)} bytes has no 5-byte header")
    if data[0] != MAGIC:
        raise WireFormatError("wire.magic", f"magic byte is {data[0]}, expected {MAGIC}")
    return int.from_bytes(data[1:HEADER_SIZE], "big")
