"""The CloudEvents 1.0 JSON profile of a catalog event (docs/routing.md): which attributes map
to which envelope fields. Samband's envelope fields travel as lower-case extension attributes."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, cast

import fastavro

from schemas.catalog import EVENTS_NAMESPACE, catalog, fullname

# CloudEvents attributes copied to the envelope as they are.
ATTRIBUTES = ("id", "source", "type", "specversion", "subject", "dataschema")

# Extension attribute -> envelope field.
EXTENSIONS = {
    "person": "person",
    "kommunenummer": "kommunenummer",
    "addressprotection": "addressProtection",
    "changekind": "changeKind",
    "correctseventid": "correctsEventId",
    "sequencenumber": "sequenceNumber",
    "correlationid": "correlationId",
}


# Attributes a CloudEvent of the profile may carry besides its extensions: the CloudEvents core
# ones and W3C trace context (the distributed tracing extension).
CORE_ATTRIBUTES = frozenset(
    {"id", "source", "specversion", "type", "datacontenttype", "dataschema", "subject", "time", "data"}
    | {"traceparent", "tracestate"}
)
_ATTRIBUTE_OF = {field: attribute for attribute, field in EXTENSIONS.items()}


def client_field(event_type: str, field: str) -> str:
    """A field path as the client wrote it: an envelope field as its attribute (`sequencenumber`,
    not `no.samband.envelope.Envelope.sequenceNumber` or `envelope.sequenceNumber`), a data field by
    its name within `data`."""
    for prefix in ("no.samband.envelope.Envelope.", "envelope."):
        if field.startswith(prefix):
            name = field.removeprefix(prefix)
            return _ATTRIBUTE_OF.get(name, name.lower())
    return field.removeprefix(f"{EVENTS_NAMESPACE}.{event_type}.")


def avro_error_field(event_type: str, errors: list) -> str:
    """The field a fastavro validation error is about, as the client wrote its path
    (`newAddress.houseNumber`): fastavro names the outer field first, then each field inside a
    named type as `<namespace>.<Type>.<field>`."""
    fields = [str(error.field) for error in errors]
    envelope = [f for f in fields if f.startswith("no.samband.envelope.Envelope.")]
    if envelope:  # an attribute: by its own name
        return client_field(event_type, envelope[-1])
    own = f"{EVENTS_NAMESPACE}.{event_type}."
    parts: list[str] = []
    for field in fields:
        name = client_field(event_type, field) if field.startswith(own) else field.rsplit(".", 1)[-1]
        if name not in parts:  # a union tries each branch: the same field again
            parts.append(name)
    return ".".join(parts)


class CloudEventError(ValueError):
    """A CloudEvent that makes no catalog record: a reason code, the attribute or data field at
    fault, and a message. None of them holds a value from the event."""

    def __init__(self, reason: str, field: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.field = field


def record_from_cloudevent(event_type: str, event: dict, *, ignore_unknown: bool = False) -> dict:
    """The catalog record (current schema of `event_type`) of a structured-mode CloudEvent: the
    envelope from the attributes, the fields from `data` (ISO 8601 dates parsed), schema defaults
    for what is absent. Types are left to Avro validation. An attribute or `data` field the profile
    does not know is refused (`cloudevent.unknown_attribute`, `data.unknown_field`): a typo must not
    drop a value silently; `ignore_unknown` drops them (a connector's documented choice)."""
    if event.get("specversion") != "1.0":
        raise CloudEventError("cloudevent.invalid", "specversion", "specversion must be 1.0")
    if "data_base64" in event:
        raise CloudEventError(
            "cloudevent.invalid",
            "data_base64",
            "data_base64 is not accepted: send the event's data as a JSON object in data",
        )
    data = event.get("data")
    if not isinstance(data, dict):
        raise CloudEventError("cloudevent.invalid", "data", "data must be a JSON object")
    if not ignore_unknown:
        _refuse_unknown(event_type, event, data)
    envelope = {name: event[name] for name in ATTRIBUTES if name in event}
    envelope.update({field: event[ext] for ext, field in EXTENSIONS.items() if ext in event})
    if "time" not in event:
        raise CloudEventError("json.missing_field", "time", "required attribute time is missing")
    envelope["time"] = _parse(datetime.fromisoformat, event["time"], "time")
    if envelope["time"].tzinfo is None:
        raise CloudEventError("json.field_type", "time", "time has no time zone")
    try:
        envelope["time"].astimezone(UTC)  # 0001-01-01T02:00+03:00 is a valid text but no UTC instant
    except OverflowError:
        raise CloudEventError("json.field_type", "time", "time is before the first instant of year 1 in UTC") from None
    record: dict[str, Any] = {"envelope": envelope}
    dates = _date_fields(event_type)
    for field in _current_schema(event_type)["fields"]:
        name = field["name"]
        if name == "envelope":
            _fill_envelope_defaults(envelope, field["type"]["fields"])
        elif name in data:
            value = data[name]
            record[name] = _date(value, name) if name in dates else value
        elif "default" in field:
            record[name] = field["default"]
        else:
            raise CloudEventError("json.missing_field", name, f"required field {name} is missing")
    return record


def _refuse_unknown(event_type: str, event: dict, data: dict) -> None:
    for name in event:
        if name not in CORE_ATTRIBUTES and name not in EXTENSIONS:
            shown = _shown_name(name)
            raise CloudEventError(
                "cloudevent.unknown_attribute",
                shown,
                f"attribute {shown or '(unnamed)'} is not in Samband's CloudEvents profile",
            )
    _refuse_unknown_fields(event_type, data, f"{EVENTS_NAMESPACE}.{event_type}", "")


def _refuse_unknown_fields(event_type: str, value: dict, record_name: str, path: str) -> None:
    """`value`'s names against the fields of the catalog record `record_name`, and so on down its
    nested records."""
    fields = _nested_records(record_name)
    for name, inner in value.items():
        if name not in fields:
            if path:  # inside a record (an address, a name): the name itself may be personal data
                where = path.rstrip(".")
                raise CloudEventError("data.unknown_field", where, f"{where} holds a field {event_type} does not have")
            shown = _shown_name(name)
            raise CloudEventError("data.unknown_field", shown, f"{event_type} has no data field {shown or '(unnamed)'}")
        for nested in fields[name]:
            items = inner if isinstance(inner, list) else [inner]
            for item in items:
                if isinstance(item, dict):
                    _refuse_unknown_fields(event_type, item, nested, f"{path}{name}.")


@cache  # on ingest's path for every CloudEvent: the schema is walked once per record type
def _nested_records(record_name: str) -> dict[str, tuple[str, ...]]:
    """Each field of a catalog record (a full name, the envelope aside): the full names of the
    records it holds (itself, a union's branches, an array's items)."""
    record = catalog().resolve(record_name)
    return {f["name"]: tuple(_record_names(f["type"])) for f in record["fields"] if f["name"] != "envelope"}


def _record_names(avro_type) -> list[str]:
    if isinstance(avro_type, str):  # a named type defined earlier in the schema
        return [avro_type] if catalog().types.get(avro_type, {}).get("type") == "record" else []
    if isinstance(avro_type, list):
        return [name for branch in avro_type for name in _record_names(branch)]
    if isinstance(avro_type, dict):
        if avro_type.get("type") == "record":
            return [fullname(avro_type)]
        if avro_type.get("type") == "array":
            return _record_names(avro_type["items"])
    return []


_NAME = re.compile(r"[A-Za-z][A-Za-z_-]{0,63}")


def _shown_name(name: object) -> str:
    """The client's own name for what is refused, when it is a plain name. A name with digits or
    anything else is not repeated: it goes into dead-letter headers, and a client may have put an
    identity number there."""
    return name if isinstance(name, str) and _NAME.fullmatch(name) else ""


def _fill_envelope_defaults(envelope: dict, fields: list[dict]) -> None:
    for field in fields:
        if field["name"] not in envelope:
            attribute = field["name"].lower()  # the extension attribute's name
            if "default" not in field:
                raise CloudEventError("json.missing_field", attribute, f"required attribute {attribute} is missing")
            envelope[field["name"]] = field["default"]


def _date(value, field: str) -> date | None:
    """A date field as the docs promise it: ISO 8601 text. Avro's own form, days since 1970 as a
    number, is refused: 12345 would otherwise be read as 2003-10-18, and a large one overflows."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise CloudEventError("json.field_type", field, f"{field} is not an ISO 8601 date (YYYY-MM-DD)")
    return _parse(date.fromisoformat, value, field)


def _parse(parser, value, field: str):
    try:
        return parser(value)
    except (TypeError, ValueError):
        raise CloudEventError("json.field_type", field, f"{field} is not an ISO 8601 date or time") from None


@cache
def _current_schema(event_type: str) -> dict:
    return cast(dict, fastavro.parse_schema(catalog().current(event_type).schema))


@cache
def _date_fields(event_type: str) -> frozenset[str]:
    return frozenset(f.path for f in catalog().fields(event_type) if f.avro_type in ("date", "null|date"))
