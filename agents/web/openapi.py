"""The worker's OpenAPI 3.1 document, served at `/openapi.json`: every endpoint the worker serves,
with every answer it gives.

    document = openapi_document(with_registry=True)

The subscriptions API describes its own part (agents/subscriptions/openapi.py); the operations
endpoints, the dashboard's API, the schema registry and the documents themselves are described
here. Where an answer is made from a dataclass (readiness, a trace, a subscription's health, a
history sample), its schema is that dataclass's JSON Schema; the rest is written out here.
tests/operations/test_worker_documents.py holds the paths against the worker's router (a route
without a description fails it), and schemathesis in tests/routing/test_tenants.py holds every
answer of a running worker against the schemas.
"""

from __future__ import annotations

from functools import cache

from pydantic import TypeAdapter

from agents.delivery_health import SubscriptionHealth
from agents.event_trace import EventTrace
from agents.person_report import PersonReport
from agents.subscriptions import openapi as subscriptions
from agents.subscriptions.tokens import DLQ_REPLAY, OPERATIONS_READ, PERSON_REPORT
from agents.web.history import Sample
from agents.web.operations import Readiness

_REF = "#/components/schemas/{model}"
_JSON = "application/json"
_REGISTRY_JSON = "application/vnd.schemaregistry.v1+json"


def _json(description: str, schema: dict) -> dict:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _ref(name: str) -> dict:
    return {"$ref": _REF.format(model=name)}


_DENIED = {
    "401": _json("no or unknown bearer token (error auth.unauthenticated)", _ref("Error")),
    "403": _json("the token lacks the scope (error auth.scope_missing)", _ref("Error")),
}
_OPERATIONS = [{"bearer": [OPERATIONS_READ]}]
_ASSET = {"name": "name", "in": "path", "required": True, "schema": {"enum": ["dashboard.js", "dashboard.css"]}}


def _operations_paths() -> dict:
    return {
        "/healthz": {
            "get": {
                "summary": "Liveness: the process answers",
                "tags": ["operations"],
                "responses": {"200": _json("alive, or degraded with the reasons (a lost broker)", _ref("Health"))},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: stages started, partitions held, lag within the bound",
                "tags": ["operations"],
                "responses": {
                    "200": _json("ready", _ref("Readiness")),
                    "503": _json("not ready; `reasons` says why", _ref("Readiness")),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format)",
                "tags": ["operations"],
                "responses": {
                    "200": {"description": "the metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}
                },
            }
        },
    }


def _dashboard_paths() -> dict:
    return {
        "/dashboard": {
            "get": {
                "summary": "The operations dashboard (HTML; it asks for a token and polls /api/*)",
                "tags": ["dashboard"],
                "responses": {
                    "200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}
                },
            }
        },
        "/dashboard/{name}": {
            "get": {
                "summary": "The dashboard's script and style sheet",
                "tags": ["dashboard"],
                "parameters": [_ASSET],
                "responses": {
                    "200": {
                        "description": "the file",
                        "content": {
                            "text/javascript": {"schema": {"type": "string"}},
                            "application/javascript": {"schema": {"type": "string"}},
                            "text/css": {"schema": {"type": "string"}},
                        },
                    },
                    "404": {"description": "no such file", "content": {"text/plain": {"schema": {"type": "string"}}}},
                },
            }
        },
        "/api/overview": {
            "get": {
                "summary": "Throughput, lag, delivery health, dead letters of every stage, and a short history",
                "tags": ["dashboard"],
                "security": _OPERATIONS,
                "responses": {"200": _json("the overview", _ref("Overview")), **_DENIED},
            }
        },
        "/api/trace/{event_id}": {
            "get": {
                "summary": "One event's path as a timeline: ingested, routed, attempts, dead letters, replays",
                "tags": ["dashboard"],
                "security": _OPERATIONS,
                "parameters": [{"name": "event_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": _json("the trace", _ref("EventTrace")),
                    "404": _json("the bus has never seen the event (`found` false)", _ref("EventTrace")),
                    **_DENIED,
                },
            }
        },
        "/api/dead-letters/{id}/replay": {
            "post": {
                "summary": "Replay one delivery dead letter (`<partition>:<offset>`, as `samband dlq` names it)",
                "tags": ["dashboard"],
                "security": [{"bearer": [DLQ_REPLAY]}],
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": _json("replayed, or why not (`said`)", _ref("ReplayedOne")),
                    "404": _json("no delivery dead letter with this id (error dead_letter.not_found)", _ref("Error")),
                    "409": _json(
                        "the dead letter does not open with this bus's key (error dead_letter.unreadable)",
                        _ref("Error"),
                    ),
                    **_DENIED,
                },
            }
        },
        "/api/person-report": {
            "post": {
                "summary": "A person's access report (GDPR art. 15): which systems received which events, "
                "when, under which legal basis, with which fields. Audit-logged",
                "tags": ["person"],
                "security": [{"bearer": [PERSON_REPORT]}],
                "requestBody": {
                    "required": True,
                    "content": {
                        _JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["person"],
                                "properties": {"person": {"type": "string", "description": "identity number"}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "the report; an HTML page when the request accepts text/html",
                        "content": {
                            _JSON: {"schema": _ref("PersonReport")},
                            "text/html": {"schema": {"type": "string"}},
                        },
                    },
                    "400": _json(
                        "not JSON (request.invalid_json), or no `person` (request.person_missing)", _ref("Error")
                    ),
                    "422": _json(
                        "not a valid identity number (identity.format, identity.checksum, ...)", _ref("Error")
                    ),
                    **_DENIED,
                },
            }
        },
        "/api/subscriptions/{id}/replay": {
            "post": {
                "summary": "Replay the subscription's delivery dead letters (same idempotency keys)",
                "tags": ["dashboard"],
                "security": [{"bearer": [DLQ_REPLAY]}],
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json("what was replayed", _ref("Replayed")), **_DENIED},
            }
        },
    }


def _registry(description: str, schema: dict) -> dict:
    return {"description": description, "content": {_REGISTRY_JSON: {"schema": schema}}}


def _registry_error(description: str) -> dict:
    return _registry(description, _ref("RegistryError"))


def _registry_paths() -> dict:
    subject = {"name": "subject", "in": "path", "required": True, "schema": {"type": "string"}}
    version = {"name": "version", "in": "path", "required": True,
               "schema": {"type": "string", "description": "a version number or `latest`"}}  # fmt: skip
    schema_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    body = {"required": True, "content": {_JSON: {"schema": _ref("RegistrySchema")},
                                          _REGISTRY_JSON: {"schema": _ref("RegistrySchema")}}}  # fmt: skip
    missing_subject = _registry_error("no such subject (40401)")
    no_schema = _registry_error("no such schema (40403)")
    integers, strings = {"type": "array", "items": {"type": "integer"}}, {"type": "array", "items": {"type": "string"}}
    tags = ["schema registry"]
    return {
        "/schemas/types": {"get": {"summary": "Schema types", "tags": tags,
                                   "responses": {"200": _registry("AVRO", strings)}}},
        "/schemas/ids/{id}": {"get": {"summary": "A schema by its id", "tags": tags, "parameters": [schema_id],
                                      "responses": {"200": _registry("the schema", _ref("RegistrySchema")),
                                                    "404": no_schema}}},
        "/schemas/ids/{id}/versions": {"get": {
            "summary": "The subjects and versions of a schema id", "tags": tags, "parameters": [schema_id],
            "responses": {"200": _registry("subject versions", {"type": "array", "items": _ref("SubjectVersion")}),
                          "404": no_schema}}},
        "/subjects": {"get": {"summary": "Every subject: the envelope and each event type", "tags": tags,
                              "responses": {"200": _registry("subjects", strings)}}},
        "/subjects/{subject}/versions": {"get": {
            "summary": "A subject's versions", "tags": tags, "parameters": [subject],
            "responses": {"200": _registry("version numbers", integers), "404": missing_subject}},
            "post": {"summary": "Register a schema: answers the existing id; the catalog changes only by release",
                     "tags": tags, "security": [{"bearer": []}], "parameters": [subject], "requestBody": body,
                     "responses": {"200": _registry("its id", {"type": "object", "required": ["id"],
                                                              "properties": {"id": {"type": "integer"}}}),
                                   "401": _registry_error("no bearer token (40101)"), "404": _registry_error(
                                       "no such subject (40401), or a schema not in the catalog (40403)"),
                                   "422": _registry_error("the body holds no valid schema (42201)")}}},
        "/subjects/{subject}/versions/{version}": {"get": {
            "summary": "One version of a subject", "tags": tags, "parameters": [subject, version],
            "responses": {"200": _registry("the version", _ref("SubjectVersionSchema")),
                          "404": _registry_error("no such subject (40401) or version (40402)")}}},
        "/subjects/{subject}/versions/{version}/schema": {"get": {
            "summary": "One version's schema text", "tags": tags, "parameters": [subject, version],
            "responses": {"200": _json("the Avro schema", {"type": "object"}),
                          "404": _registry_error("no such subject (40401) or version (40402)")}}},
        "/subjects/{subject}": {"post": {
            "summary": "Look a schema up under a subject", "tags": tags, "parameters": [subject], "requestBody": body,
            "responses": {"200": _registry("the version", _ref("SubjectVersionSchema")),
                          "404": _registry_error("no such subject (40401), or a schema not in the catalog (40403)"),
                          "422": _registry_error("the body holds no valid schema (42201)")}}},
    }  # fmt: skip


def _document_paths() -> dict:
    return {
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "tags": ["documents"],
                "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})},
            }
        },
        "/asyncapi.json": {
            "get": {
                "summary": "The AsyncAPI 3.1 document of the bus's topics",
                "tags": ["documents"],
                "responses": {"200": _json("AsyncAPI 3.1", {"type": "object"})},
            }
        },
    }


def _components() -> dict:
    defs: dict = {}
    schemas = {}
    for model in (Readiness, EventTrace, SubscriptionHealth, Sample, PersonReport):
        schemas[model] = TypeAdapter(model).json_schema(ref_template=_REF)
        defs.update(schemas[model].pop("$defs", {}))
    trace = schemas[EventTrace]
    trace["properties"]["found"] = {"type": "boolean", "description": "false: the bus has never seen the event"}
    trace["properties"]["timeline"] = {
        "type": "array",
        "description": "oldest first",
        "items": {"type": "object", "required": ["at", "step"],
                  "properties": {"at": {"type": "string"}, "step": {"type": "string"}}},
    }  # fmt: skip
    trace["required"] = [*trace.get("required", []), "found", "timeline"]
    count, text = {"type": "integer"}, {"type": "string"}
    texts = {"type": "array", "items": text}
    return {
        **defs,
        "Health": _object(
            {"status": {"type": "string", "enum": ["alive", "degraded"]}, "reasons": texts}, required=["status"]
        ),
        "Readiness": schemas[Readiness],
        "EventTrace": trace,
        "SubscriptionHealth": schemas[SubscriptionHealth],
        "Overview": _object(
            {
                "broker": _object({"reachable": {"type": "boolean"}, "problem": text}, required=["reachable"]),
                "at": {"type": "number", "description": "epoch seconds"},
                "throughput": _array(
                    _object({"topic": text, "records": count, "rate_per_second": {"type": ["number", "null"]}})
                ),
                "lag": _array(_object({"group": text, "topic": text, "lag": count})),
                "subscriptions": _array(_ref("SubscriptionHealth")),
                "backfills": _array(_ref("BackfillProgress")),
                "dead_letters": _ref("DeadLetters"),
                "history": _ref("History"),
            },
            required=["broker"],
            description="`broker.reachable` false: only `broker` (and the history so far) is given.",
        ),
        "DeadLetters": _object(
            {
                "window_s": {"type": "number"},
                "stages": _array(
                    _object(
                        {"stage": text, "total": count, "reasons": _array(_object({"reason": text, "count": count}))}
                    )
                ),
                "recent": _array(
                    _object(
                        {
                            name: {"type": ["string", "null"]}
                            for name in ("id", "stage", "reason", "subscription", "event_id", "event_type", "time")
                        },
                        required=["id", "stage", "reason", "time"],
                    )
                ),
                "problems": {**texts, "description": "limits passed"},
            }
        ),
        "History": _object(
            {"interval_s": {"type": "number"}, "span_s": {"type": "number"}, "samples": _array(_ref("Sample"))}
        ),
        "Sample": schemas[Sample],
        "PersonReport": schemas[PersonReport]
        | {"required": [*schemas[PersonReport].get("required", []), "strengt_fortrolig"]}
        | {"properties": {**schemas[PersonReport]["properties"], "strengt_fortrolig": {"type": "boolean"}}},
        "ReplayedOne": _object({"dead_letter": text, "replayed": count, "said": texts}),
        "Replayed": _object(
            {
                "subscription": text,
                "replayed": count,
                "dead_letters": count,
                "skipped": {**count, "description": "delivered since, so not replayed"},
            }
        ),
        "RegistryError": _object({"error_code": count, "message": text}),
        "RegistrySchema": _object({"schema": text, "schemaType": text}, required=["schema"]),
        "SubjectVersion": _object({"subject": text, "version": count}),
        "SubjectVersionSchema": _object({"subject": text, "version": count, "id": count, "schema": text}),
    }


def _object(properties: dict, required: list[str] | None = None, **extra) -> dict:
    """A JSON object of these properties; every one required unless `required` says which."""
    return {"type": "object", "required": list(properties) if required is None else required, **extra,
            "properties": properties}  # fmt: skip


def _array(items: dict) -> dict:
    return {"type": "array", "items": items}


@cache
def openapi_document(with_registry: bool = True) -> dict:
    """`with_registry` False: the worker uses an external schema registry and serves none."""
    paths = {**subscriptions.paths(), **_operations_paths(), **_dashboard_paths(), **_document_paths()}
    if with_registry:
        paths.update(_registry_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Samband worker",
            "version": "1",
            "description": "The worker's HTTP API: subscriptions (who receives which citizen life events, "
            "with which fields, under which legal basis), operations endpoints, the dashboard's API and "
            "the schema registry read API. Answers never hold personal data.",
        },
        "paths": paths,
        "components": {
            "schemas": {**subscriptions.components(), **_components()},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "tokens, their tenants and scopes: SAMBAND_API_TOKENS_FILE, SAMBAND_API_TOKENS",
                }
            },
        },
    }
