"""Avro binary decoding compiled per writer schema: fastavro's result, in about two thirds of its time.

    read = compile_reader(fastavro.parse_schema(schema))   # None: the schema uses something not compiled
    record = read(message, 5)                                # decode from offset 5 (after the wire header)

fastavro's reader walks the schema for every field of every message, and the router decodes
every canonical event in full: decoding was a quarter of its time (8 µs of a Death event's
~33). This module walks the schema once and generates a Python function with the walk
unrolled: the reads of a record's fields one after another, nested records, enum symbols and union branches
inlined (5 µs for the same event; bench/bench_codec.py measures it against fastavro).
It covers what the catalog uses (every primitive, record, enum, array, map, fixed, union,
named references; the logical types date and timestamp-millis, as fastavro returns them).
A schema with any other logical type gets None, and the codec uses fastavro for it.

Reading with the writer schema only: resolving to another reader schema stays with fastavro.
Enum and union indexes under 64 (every one in the catalog) are read as the one byte every Avro
writer makes of them; one written in more bytes than it needs, which no writer does, is read
as corrupt. Larger enums and unions are read as any long.
Errors are fastavro's kinds, so callers map them alike: EOFError when the message ends early,
ValueError for a bad length, enum index or union branch, UnicodeDecodeError for bad UTF-8.
tests/schemas/test_compiled_reader.py checks it against fastavro on every catalog schema.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAYS_SHIFT = date(1970, 1, 1).toordinal()
_LOGICAL = {("long", "timestamp-millis"), ("int", "date")}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


class NotCompiled(Exception):
    """The schema uses a feature this module does not compile."""


def compile_reader(schema: dict | list | str) -> Callable[[bytes, int], dict] | None:
    """A function (message, offset) -> record for a fastavro-parsed schema, or None if not compilable."""
    named = schema.get("__named_schemas", {}) if isinstance(schema, dict) else {}
    try:
        source = _Compiler(named).module(schema)
    except NotCompiled:
        return None
    namespace: dict[str, Any] = {
        "_varint": _varint,
        "_length": _length,
        "_EPOCH": _EPOCH,
        "_DAYS_SHIFT": _DAYS_SHIFT,
        "timedelta": timedelta,
        "date": date,
        "_float": struct.Struct("<f").unpack_from,
        "_double": struct.Struct("<d").unpack_from,
    }
    name = (
        schema.get("name", schema["type"])
        if isinstance(schema, dict)
        else "union"
        if isinstance(schema, list)
        else schema
    )
    exec(compile(source, f"<avro reader {name}>", "exec"), namespace)
    return namespace["read"]


def _length(buf: bytes, pos: int) -> tuple[int, int]:
    """(end, start) of a bytes or string value whose length starts at `pos`: the slow path, for
    a length of 64 or more (several bytes) or a negative one (an error)."""
    first = buf[pos]
    if first & 0x80:
        length, pos = _varint(buf, pos + 1, first)
    else:
        length, pos = (first >> 1) ^ -(first & 1), pos + 1
    if length < 0:
        raise ValueError("negative length")
    return pos + length, pos


def _varint(buf: bytes, pos: int, first: int) -> tuple[int, int]:
    """The rest of a zig-zag varint whose first byte (`first`, high bit set) is already read."""
    value, shift = first & 0x7F, 7
    for byte in buf[pos : pos + 9]:
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7
    if pos >= len(buf):
        raise EOFError("varint ends early")
    raise ValueError("varint longer than 10 bytes")


class _Compiler:
    def __init__(self, named: dict[str, dict]):
        self.named = named
        self.functions: dict[str, str] = {}  # record full name -> function name (a recursive record)
        self.inlining: list[str] = []  # the records whose fields are being read inline, outermost first
        self.sources: list[str] = []
        self.counter = 0

    def module(self, schema) -> str:
        lines = ["def read(buf, pos):", "    size = len(buf)", "    try:"]
        self.value(schema, "result", lines, 2)
        # A byte read past the end; every index the code checks itself raises ValueError.
        lines += [
            "    except IndexError:",
            "        raise EOFError('message ends early') from None",
            "    return result",
        ]
        return "\n".join(self.sources + lines) + "\n"

    def var(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def value(self, schema, target: str, lines: list[str], depth: int) -> None:
        """Append the statements that read `schema` at `pos` into the local `target`."""
        pad = "    " * depth
        if isinstance(schema, list):
            return self.union(schema, target, lines, depth)
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return self.primitive(schema, target, lines, depth)
            if schema not in self.named:
                raise NotCompiled(f"unknown named type {schema}")
            schema = self.named[schema]
        kind = schema["type"]
        logical = schema.get("logicalType")
        if logical is not None and (kind, logical) not in _LOGICAL:
            raise NotCompiled(f"logical type {logical}")
        if kind in _PRIMITIVES:
            self.primitive(kind, target, lines, depth)
            if logical == "timestamp-millis":
                lines.append(f"{pad}{target} = _EPOCH + timedelta(0, 0, 0, {target})")  # milliseconds, exactly
            elif logical == "date":
                lines.append(f"{pad}{target} = date.fromordinal({target} + _DAYS_SHIFT)")
        elif kind == "record" and schema["name"] not in self.inlining:  # inline, unless it contains itself
            self.inlining.append(schema["name"])
            lines.append(f"{pad}{target} = {self.fields(schema, lines, depth)}")
            self.inlining.pop()
        elif kind == "record":
            lines.append(f"{pad}{target}, pos = {self.record(schema)}(buf, pos, size)")
        elif kind == "enum":
            symbols = self.var("symbols")
            self.sources.append(f"{symbols} = {tuple(schema['symbols'])!r}")
            self.index(len(schema["symbols"]), lines, depth)
            lines.append(f"{pad}if not 0 <= index < {len(schema['symbols'])}: raise ValueError('enum index')")
            lines.append(f"{pad}{target} = {symbols}[index]")
        elif kind == "fixed":
            lines.append(f"{pad}end = pos + {int(schema['size'])}")
            lines.append(f"{pad}if end > size: raise EOFError('fixed')")
            lines.append(f"{pad}{target} = buf[pos:end]; pos = end")
        elif kind in ("array", "map"):
            self.blocks(schema, target, lines, depth)
        else:
            raise NotCompiled(f"type {kind}")

    def long(self, target: str, lines: list[str], depth: int) -> None:
        pad = "    " * depth
        lines += [
            f"{pad}b = buf[pos]; pos += 1",
            f"{pad}if b & 0x80: {target}, pos = _varint(buf, pos, b)",
            f"{pad}else: {target} = (b >> 1) ^ -(b & 1)",
        ]

    def primitive(self, kind: str, target: str, lines: list[str], depth: int) -> None:
        pad = "    " * depth
        if kind == "null":
            lines.append(f"{pad}{target} = None")
        elif kind == "boolean":
            lines.append(f"{pad}{target} = buf[pos] != 0; pos += 1")
        elif kind in ("int", "long"):
            self.long(target, lines, depth)
        elif kind in ("float", "double"):
            width = 4 if kind == "float" else 8
            lines.append(f"{pad}if pos + {width} > size: raise EOFError('{kind}')")
            lines.append(f"{pad}{target} = _{kind}(buf, pos)[0]; pos += {width}")
        else:  # bytes, string: a length (one byte when under 64: even, under 0x80), then the bytes
            lines.append(f"{pad}b = buf[pos]")
            lines.append(f"{pad}if b & 0x81: end, pos = _length(buf, pos)")
            lines.append(f"{pad}else: pos += 1; end = pos + (b >> 1)")
            lines.append(f"{pad}if end > size: raise EOFError('{kind}')")
            decode = ".decode()" if kind == "string" else ""
            lines.append(f"{pad}{target} = buf[pos:end]{decode}; pos = end")

    def union(self, branches: list, target: str, lines: list[str], depth: int) -> None:
        pad = "    " * depth
        self.index(len(branches), lines, depth)
        for i, branch in enumerate(branches):
            lines.append(f"{pad}{'if' if i == 0 else 'elif'} index == {i}:")
            self.value(branch, target, lines, depth + 1)
        lines.append(f"{pad}else: raise ValueError('union branch')")

    def index(self, count: int, lines: list[str], depth: int) -> None:
        """Read an enum or union index into `index`: under 64, from its one byte."""
        if count > 64:
            return self.long("index", lines, depth)
        pad = "    " * depth
        lines += [
            f"{pad}b = buf[pos]; pos += 1",
            f"{pad}index = -1 if b & 0x81 else b >> 1  # odd: negative; high bit: more bytes than needed",
        ]

    def blocks(self, schema: dict, target: str, lines: list[str], depth: int) -> None:
        pad, inner = "    " * depth, "    " * (depth + 2)
        count, item, key = self.var("count"), self.var("item"), self.var("key")
        is_map = schema["type"] == "map"
        lines.append(f"{pad}{target} = {{}}" if is_map else f"{pad}{target} = []")
        lines.append(f"{pad}while True:")
        self.long(count, lines, depth + 1)
        lines.append(f"{pad}    if {count} == 0: break")
        lines.append(f"{pad}    if {count} < 0:")  # a negative count is followed by the block's size in bytes
        lines.append(f"{pad}        {count} = -{count}")
        self.long("_", lines, depth + 2)
        lines.append(f"{pad}    for _ in range({count}):")
        if is_map:
            self.primitive("string", key, lines, depth + 2)
        self.value(schema["values"] if is_map else schema["items"], item, lines, depth + 2)
        lines.append(f"{inner}{target}[{key}] = {item}" if is_map else f"{inner}{target}.append({item})")

    def record(self, schema: dict) -> str:
        """The name of the function reading a recursive record (generated once per record)."""
        name = schema["name"]
        function = self.functions.get(name)
        if function is None:
            function = self.functions[name] = self.var("record")
            lines = [f"def {function}(buf, pos, size):"]
            lines.append(f"    return {self.fields(schema, lines, 1)}, pos")
            self.sources.append("\n".join(lines))
        return function

    def fields(self, schema: dict, lines: list[str], depth: int) -> str:
        """Append the reads of a record's fields into locals; the dict expression of the record."""
        values = []
        for field in schema["fields"]:
            local = self.var("f")
            self.value(field["type"], local, lines, depth)
            values.append(f"{field['name']!r}: {local}")
        return f"{{{', '.join(values)}}}"
