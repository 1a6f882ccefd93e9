"""The OpenAPI 3 document of the HTTP ingest endpoint, served at `/openapi.json`."""

from __future__ import annotations

from functools import cache

from connectors.http_ingest.binding import BATCH, BINARY_DATA, STRUCTURED
from schemas.catalog import EVENTS_NAMESPACE, UNKNOWN_EVENT, catalog
from schemas.cloudevents import EXTENSIONS
from schemas.json_schema import DataSchemas

EVENT_TYPES = [t for t in catalog().event_types() if t != UNKNOWN_EVENT]

_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": ["string", "null"]}
# The attributes of every event; `type` and `data` are added per event type.
ATTRIBUTES = {
    "specversion": {"type": "string", "enum": ["1.0"]},
    "id": {"type": "string", "minLength": 1, "description": "event id, unique per source: resending it is safe"},
    "source": {"type": "string", "minLength": 1, "description": "URI reference of the sending system"},
    "time": {"type": "string", "format": "date-time", "description": "with a time zone"},
    "subject": _NULLABLE_STRING,
    "dataschema": _NULLABLE_STRING,
    "datacontenttype": {"type": "string", "enum": ["application/json"]},
    "person": {"type": "string", "description": "folkeregisteridentifikator (11 digits)"},
    "kommunenummer": {
        "type": "array",
        "items": {"type": "string", "pattern": "^[0-9]{4}$"},
        "description": "the kommuner the event concerns; required for Birth, Death and Move",
    },
    "addressprotection": {"$ref": "#/components/schemas/AddressProtection"},
    "changekind": {"$ref": "#/components/schemas/ChangeKind"},
    "correctseventid": {**_NULLABLE_STRING, "description": "the event a correction or annulment changes"},
    "sequencenumber": {"type": ["integer", "null"], "description": "the source's sequence number, if it has one"},
    "correlationid": _NULLABLE_STRING,
    "traceparent": {"type": "string", "description": "W3C trace context"},
    "tracestate": _STRING,
}


def event_schema(event_type: str, data: dict) -> dict:
    """One event type's CloudEvent as ingest takes it; `data` the schema (or `$ref`) of its data."""
    return {
        "type": "object",
        "description": f"A {event_type} event: CloudEvents 1.0 in Samband's profile (docs/catalog.md). "
        "An attribute or data field not listed is refused unless the connector is set to ignore them.",
        "required": ["specversion", "id", "source", "type", "time", "person", "data"],
        "additionalProperties": False,
        "properties": {
            **ATTRIBUTES,
            "type": {"type": "string", "const": f"{EVENTS_NAMESPACE}.{event_type}"},
            "data": data,
        },
    }


@cache
def _components() -> dict:
    """`<Type>Event` and `<Type>Data` of every event type, the named types they use, and `CloudEvent`:
    any one of the events, told apart by `type`."""
    schemas = DataSchemas()
    events = {f"{t}Event": event_schema(t, schemas.data(t)) for t in EVENT_TYPES}
    schemas.named("no.samband.common.AddressProtection")
    schemas.named("no.samband.common.ChangeKind")
    cloudevent = {
        "oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in events],
        "discriminator": {
            "propertyName": "type",
            "mapping": {f"{EVENTS_NAMESPACE}.{t}": f"#/components/schemas/{t}Event" for t in EVENT_TYPES},
        },
    }
    return {**schemas.components, **events, "CloudEvent": cloudevent}


ERRORS = {
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["code", "field", "message"],
                "properties": {
                    "code": {"type": "string", "example": "identity.checksum"},
                    "field": {"type": "string", "example": "person"},
                    "message": {"type": "string", "description": "for people; never quotes submitted data"},
                    "index": {"type": "integer", "description": "position in a batch"},
                },
            },
        }
    },
}


def _error(description: str, headers: dict | None = None) -> dict:
    response = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}},
    }
    if headers:
        response["headers"] = headers
    return response


def openapi_document(max_batch: int) -> dict:
    binary_headers = [
        {"name": f"ce-{name}", "in": "header", "required": False, "schema": _STRING,
         "description": "binary mode: a CloudEvents attribute (percent-encoded)"}
        for name in ("specversion", "id", "source", "type", "time", "subject", *EXTENSIONS)
    ]  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Samband HTTP ingest",
            "version": "1",
            "description": "Municipal systems publish citizen life events as CloudEvents. 202 means every event "
            "of the request is durably written to Kafka; any other answer means none is to be counted on.",
        },
        "paths": {
            "/events": {
                "post": {
                    "summary": "Publish one event or a batch",
                    "security": [{"bearer": []}],
                    "parameters": binary_headers,
                    "requestBody": {
                        "required": True,
                        "content": {
                            STRUCTURED: {"schema": {"$ref": "#/components/schemas/CloudEvent"}},
                            BATCH: {
                                "schema": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": max_batch,
                                    "items": {"$ref": "#/components/schemas/CloudEvent"},
                                }
                            },
                            BINARY_DATA: {
                                "schema": {
                                    "type": "object",
                                    "description": "binary mode: `data`; the attributes are ce-* headers",
                                }
                            },
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "every event is durably on the bus's ingest topic, <app id>-ingest (acks=all)",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["accepted"],
                                        "properties": {"accepted": {"type": "array", "items": _STRING}},
                                    }
                                }
                            },
                        },
                        "400": _error("an event or the body is invalid; nothing was written"),
                        "401": _error("no or unknown bearer token"),
                        "403": _error("the system is not granted an event type it sent; nothing was written"),
                        "413": _error("body or batch too large"),
                        "415": _error("unsupported Content-Type"),
                        "503": _error(
                            "Kafka did not acknowledge in time; retry later with the same event ids",
                            {"Retry-After": {"schema": {"type": "integer"}}},
                        ),
                    },
                }
            }
        },
        "components": {
            "schemas": {**_components(), "Errors": ERRORS},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
