"""From a delivery's projected `data` (JSON, as the router wrote it) to the Avro record of its projection schema.

The router writes dates and timestamps as ISO 8601 text and bytes as base64; the projection
schema (`schemas.catalog.Catalog.projection_json`) says what each field is. A field the
subscription is granted but the router withheld (address protection) is absent from `data`:
it becomes null (nullable fields) or an empty list (`envelope.kommunenummer`), never a value.
"""

from __future__ import annotations

import base64
from datetime import date, datetime

PURGE_SCHEMA = {
    "type": "record",
    "name": "Purge",
    "namespace": "no.samband.delivery",
    "doc": "Delete what you hold about the person (the record key): `delete` names what, e.g. address.",
    "fields": [{"name": "delete", "type": "string", "doc": "What to delete: address."}],
}


class RecordError(ValueError):
    """`data` does not fit the projection schema; the message names the field, never its value."""


def to_avro(schema: dict, data: dict) -> dict:
    """The record for `schema` (a JSON Avro record schema, catalog types inlined) from `data`."""
    return _record(schema, data, "", {})


def _learn(schema: dict, named: dict) -> None:
    named[schema["name"]] = schema
    if "namespace" in schema:
        named[f"{schema['namespace']}.{schema['name']}"] = schema


def _record(schema: dict, data: dict, path: str, named: dict) -> dict:
    _learn(schema, named)
    if not isinstance(data, dict):
        raise RecordError(f"{path or 'data'} is not an object")
    record = {}
    for field in schema["fields"]:
        name, where = field["name"], f"{path}{field['name']}"
        if name in data:
            record[name] = _value(field["type"], data[name], where, named)
        else:
            record[name] = _absent(field, where, named)
    return record


def _absent(field: dict, path: str, named: dict):
    kind = field["type"]
    if isinstance(kind, list) and "null" in kind:
        return None
    if isinstance(kind, dict) and kind.get("type") == "array":
        return []
    if "default" in field:
        return field["default"]
    raise RecordError(f"{path} is missing")


def _value(kind, value, path: str, named: dict):
    if isinstance(kind, list):
        if value is None and "null" in kind:
            return None
        errors = []
        for branch in (b for b in kind if b != "null"):
            try:
                return _value(branch, value, path, named)
            except (RecordError, ValueError, TypeError) as exc:
                errors.append(exc)
        raise RecordError(f"{path} fits no branch of its union")
    if isinstance(kind, str):
        if kind in named:
            return _value(named[kind], value, path, named)
        return _primitive(kind, value, path)
    logical = kind.get("logicalType")
    if logical == "date":
        return date.fromisoformat(value)
    if logical in ("timestamp-millis", "timestamp-micros"):
        return datetime.fromisoformat(value)
    kind_name = kind["type"]
    if kind_name == "record":
        return _record(kind, value, f"{path}.", named)
    if kind_name == "enum":
        _learn(kind, named)
        if value not in kind["symbols"]:
            raise RecordError(f"{path} is not one of its symbols")
        return value
    if kind_name == "array":
        return [_value(kind["items"], item, path, named) for item in value]
    if kind_name == "map":
        return {k: _value(kind["values"], v, path, named) for k, v in value.items()}
    return _primitive(kind_name, value, path)


def _primitive(kind: str, value, path: str):
    if kind == "bytes":
        return base64.b64decode(value)
    if kind == "string" and not isinstance(value, str):
        raise RecordError(f"{path} is not a string")
    return value
