"""JSON Schema (as OpenAPI 3.1 and AsyncAPI 3 use it) of a catalog event's `data`, from its Avro schema.

    schemas = DataSchemas()
    schemas.data("Move")  # {"$ref": "#/components/schemas/MoveData"}
    schemas.components    # MoveData, Address, MoveScope, ...: every named type met

It describes `data` as HTTP ingest reads it: Avro field names, dates as ISO 8601 text
(`format: date`), enums by their symbols, a field required when its Avro field has no default,
and no fields beyond the schema's (ingest refuses them with `data.unknown_field`).
"""

from __future__ import annotations

from typing import Any

from schemas.catalog import catalog

_PRIMITIVES = {
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "int": {"type": "integer", "format": "int32"},
    "long": {"type": "integer", "format": "int64"},
    "float": {"type": "number"},
    "double": {"type": "number"},
    "bytes": {"type": "string", "contentEncoding": "base64"},
}
_LOGICAL = {
    "date": {"type": "string", "format": "date"},
    "timestamp-millis": {"type": "string", "format": "date-time"},
    "timestamp-micros": {"type": "string", "format": "date-time"},
}


class DataSchemas:
    """Collects the JSON Schemas of the event types asked for, with their named types as components."""

    def __init__(self, ref_prefix: str = "#/components/schemas/"):
        self._prefix = ref_prefix
        self.components: dict[str, dict] = {}

    def data(self, event_type: str) -> dict:
        """A `$ref` to `<EventType>Data`: the record's fields but the envelope."""
        record = dict(catalog().current(event_type).schema)
        record["fields"] = [f for f in record["fields"] if f["name"] != "envelope"]
        record["name"] = f"{event_type}Data"
        record.pop("namespace", None)
        return self._schema(record)

    def named(self, fullname: str) -> dict:
        """A `$ref` to a named catalog type (`no.samband.common.ChangeKind`), added to the components."""
        return self._schema(catalog().resolve(fullname))

    def _schema(self, avro: Any) -> dict:
        if isinstance(avro, str):
            if avro in _PRIMITIVES:
                return dict(_PRIMITIVES[avro])
            if avro.rsplit(".", 1)[-1] not in self.components:  # defined inline in a part left out (the envelope)
                return self._schema(catalog().resolve(avro))
            return self._ref(avro.rsplit(".", 1)[-1])
        if isinstance(avro, list):
            choices = [self._schema(branch) for branch in avro if branch != "null"]
            schema = choices[0] if len(choices) == 1 else {"oneOf": choices}
            return {"anyOf": [schema, {"type": "null"}]} if "null" in avro else schema
        logical = avro.get("logicalType")
        if logical in _LOGICAL:
            return dict(_LOGICAL[logical])
        kind = avro["type"]
        if kind == "array":
            return {"type": "array", "items": self._schema(avro["items"])}
        if kind == "map":
            return {"type": "object", "additionalProperties": self._schema(avro["values"])}
        if kind in ("record", "enum"):
            name = avro["name"].rsplit(".", 1)[-1]
            if name not in self.components:
                self.components[name] = {}  # claimed first: a record may refer to itself
                self.components[name] = self._record(avro) if kind == "record" else self._enum(avro)
            return self._ref(name)
        return self._schema(kind)

    def _record(self, avro: dict) -> dict:
        schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {}}
        if avro.get("doc"):
            schema["description"] = avro["doc"]
        for field in avro["fields"]:
            prop = self._schema(field["type"])
            if field.get("doc"):
                prop = {**prop, "description": field["doc"]}  # beside a $ref too: OpenAPI 3.1 allows it
            schema["properties"][field["name"]] = prop
        required = [f["name"] for f in avro["fields"] if "default" not in f]
        if required:
            schema["required"] = required
        return schema

    @staticmethod
    def _enum(avro: dict) -> dict:
        schema: dict[str, Any] = {"type": "string", "enum": list(avro["symbols"])}
        if avro.get("doc"):
            schema["description"] = avro["doc"]
        return schema

    def _ref(self, name: str) -> dict:
        return {"$ref": self._prefix + name}
