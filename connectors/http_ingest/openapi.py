"""The OpenAPI 3 document of the HTTP ingest endpoint, served at `/openapi.json`."""

from __future__ import annotations

from connectors.http_ingest.binding import BATCH, BINARY_DATA, STRUCTURED
from schemas.catalog import EVENTS_NAMESPACE, UNKNOWN_EVENT, catalog
from schemas.cloudevents import EXTENSIONS

EVENT_TYPES = [t for t in catalog().event_types() if t != UNKNOWN_EVENT]

_STRING = {"type": "string"}
CLOUDEVENT = {
    "type": "object",
    "description": "A CloudEvents 1.0 event in Samband's profile; `data` holds the payload fields of the event type "
    "(see docs/catalog.md), dates as ISO 8601 strings.",
    "required": ["specversion", "id", "source", "type", "time", "data", "person"],
    "properties": {
        "specversion": {"type": "string", "enum": ["1.0"]},
        "id": {"type": "string", "minLength": 1, "description": "event id; the Kafka key, resending is safe"},
        "source": {"type": "string", "minLength": 1},
        "type": {"type": "string", "enum": [f"{EVENTS_NAMESPACE}.{t}" for t in EVENT_TYPES]},
        "time": {"type": "string", "format": "date-time"},
        "subject": _STRING,
        "dataschema": _STRING,
        "datacontenttype": {"type": "string", "enum": ["application/json"]},
        "person": {"type": "string", "description": "folkeregisteridentifikator (11 digits)"},
        "kommunenummer": {"type": "array", "items": {"type": "string", "pattern": "^[0-9]{4}$"}},
        "addressprotection": {"type": "string"},
        "changekind": {"type": "string", "enum": ["new", "correction", "annulment"]},
        "correctseventid": {"type": "string"},
        "sequencenumber": {"type": "integer"},
        "correlationid": _STRING,
        "data": {"type": "object"},
    },
}
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
                    "field": {"type": "string", "example": "envelope.person"},
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
        "openapi": "3.0.3",
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
                            "description": "every event is durably on samband-ingest (acks=all)",
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
            "schemas": {"CloudEvent": CLOUDEVENT, "Errors": ERRORS},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
