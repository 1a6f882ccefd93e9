"""The subscriptions API's part of the worker's OpenAPI 3.1 document (agents/web/openapi.py).

The paths are written out here; the Subscription schema is the model's own JSON Schema, so
the document cannot drift from what the API accepts.
"""

from __future__ import annotations

from functools import cache

from agents.subscriptions.model import Subscription

_REF = "#/components/schemas/{model}"


def _response(description: str, schema: str | None = None) -> dict:
    if schema is None:
        return {"description": description}
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_ERRORS = {
    "401": _response("no or unknown bearer token (error auth.unauthenticated)", "Error"),
    "403": _response(
        "the token lacks the scope (error auth.scope_missing), may not create this id "
        "(auth.id_not_owned), or grants need the operator scope (auth.operator_required, "
        "naming each grant in problems)",
        "Error",
    ),
}
_NOT_FOUND = _response(
    "no subscription with this id that the token owns (error subscription.not_found); "
    "another tenant's subscriptions answer the same",
    "Error",
)
_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,99}$"},
}
_BODY = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Subscription"}}}}
# PUT takes the id from the path: the body may leave it out (or repeat it; another id is 422).
_PUT_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SubscriptionWithoutId"}}},
}
_INVALID = _response("invalid subscription (error subscription.invalid, with problems)", "Error")
_NOT_JSON = _response("the body is not JSON (error request.invalid_json)", "Error")


@cache
def components() -> dict:
    schemas = Subscription.model_json_schema(ref_template=_REF)
    components = schemas.pop("$defs", {})
    components["Subscription"] = schemas
    components["SubscriptionWithoutId"] = {
        **schemas,
        "title": "SubscriptionWithoutId",
        "description": "A subscription whose id, when left out, is the one in the path.",
        "required": [name for name in schemas.get("required", []) if name != "id"],
    }
    components["Error"] = {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "stable code, e.g. subscription.not_found"},
            "message": {"type": "string"},
            "problems": {"type": "array", "items": {"type": "string"}, "description": "field path: what is wrong"},
        },
    }
    components["BackfillRequest"] = {
        "type": "object",
        "required": ["since"],
        "properties": {"since": {"type": "string", "format": "date", "description": "the first day sent again"}},
    }
    components["Backfill"] = {
        "type": "object",
        "description": "a backfill asked for (docs/backfill.md)",
        "properties": {
            "id": {"type": "string"},
            "subscription": {"type": "string"},
            "since": {"type": "string"},
            "requested_at": {"type": "string"},
            "requested_by": {"type": "string"},
        },
    }
    components["BackfillProgress"] = {
        "type": "object",
        "description": "how far the routers have come, over the partitions of the events topic",
        "properties": {
            "subscription": {"type": "string"},
            "id": {"type": "string"},
            "since": {"type": "string"},
            "requested_at": {"type": "string"},
            "partitions": {"type": "integer"},
            "begun": {"type": "integer"},
            "finished": {"type": "integer"},
            "routed": {"type": "integer", "description": "events read again"},
            "total": {"type": "integer", "description": "events in the ranges of the partitions begun"},
            "done": {"type": "boolean"},
        },
    }
    components["EventsPage"] = {
        "type": "object",
        "required": ["subscription", "events", "next", "more"],
        "properties": {
            "subscription": {"type": "string"},
            "events": {
                "type": "array",
                "description": "CloudEvents (structured JSON), each with its idempotency key as `idempotencykey`",
                "items": {
                    "type": "object",
                    "required": ["specversion", "id", "source", "type", "idempotencykey"],
                    "properties": {"idempotencykey": {"type": "string"}, "subject": {"type": "string"}},
                },
            },
            "next": {"type": "string", "description": "the cursor to ask with next (`after`)"},
            "more": {"type": "boolean", "description": "the page stopped early: ask again at once"},
        },
    }
    return components


def paths() -> dict:
    read, write = [{"bearer": ["subscriptions:read"]}], [{"bearer": ["subscriptions:write"]}]
    operator = [{"bearer": ["subscriptions:operator"]}]
    return {
        "/subscriptions": {
            "get": {
                "summary": "List the subscriptions the token owns",
                "security": read,
                "responses": {
                    "200": {
                        "description": "the token's subscriptions (an operator's: all)",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "subscriptions": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Subscription"},
                                        }
                                    },
                                }
                            }
                        },
                    },
                    **_ERRORS,
                },
            },
            "post": {
                "summary": "Create a subscription",
                "security": write,
                "requestBody": _BODY,
                "responses": {
                    "201": _response("created", "Subscription"),
                    "409": _response("the id exists (error subscription.exists)", "Error"),
                    "400": _NOT_JSON,
                    "422": _INVALID,
                    **_ERRORS,
                },
            },
        },
        "/subscriptions/{id}": {
            "parameters": [_ID],
            "get": {
                "summary": "Get a subscription",
                "security": read,
                "responses": {"200": _response("the subscription", "Subscription"), "404": _NOT_FOUND, **_ERRORS},
            },
            "put": {
                "summary": "Create or replace a subscription",
                "security": write,
                "requestBody": _PUT_BODY,
                "responses": {
                    "200": _response("replaced", "Subscription"),
                    "201": _response("created", "Subscription"),
                    "400": _NOT_JSON,
                    "404": _NOT_FOUND,
                    "422": _INVALID,
                    **_ERRORS,
                },
            },
            "delete": {
                "summary": "Delete a subscription",
                "security": write,
                "responses": {"204": _response("deleted"), "404": _NOT_FOUND, **_ERRORS},
            },
        },
        "/subscriptions/{id}/backfill": {
            "parameters": [_ID],
            "post": {
                "summary": "Send the subscription the retained events it missed, from a date",
                "description": "Each event under the subscription as it is now and the person's protection grade "
                "now, marked with the CloudEvents attribute `backfill`; live traffic first (docs/backfill.md). "
                "A new request replaces the subscription's earlier backfill.",
                "security": operator,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BackfillRequest"}}},
                },
                "responses": {
                    "202": _response("asked for: the routers begin within a second", "Backfill"),
                    "400": _NOT_JSON,
                    "404": _NOT_FOUND,
                    "422": _response("since is not a date, or is in the future (error backfill.invalid)", "Error"),
                    **_ERRORS,
                },
            },
            "get": {
                "summary": "How far the subscription's backfill has come",
                "security": read,
                "responses": {
                    "200": _response("its progress", "BackfillProgress"),
                    "404": _response(
                        "no such subscription (subscription.not_found), or no backfill asked for it "
                        "(backfill.not_found)",
                        "Error",
                    ),
                    **_ERRORS,
                },
            },
            "delete": {
                "summary": "Cancel the subscription's backfill",
                "security": operator,
                "responses": {"204": _response("cancelled (or none was running)"), "404": _NOT_FOUND, **_ERRORS},
            },
        },
        "/subscriptions/{id}/events": {
            "parameters": [_ID],
            "get": {
                "summary": "Fetch what the subscription was sent, after a cursor (pull delivery, or recovery)",
                "description": "A pull subscription's events, or what the router sent any other subscription "
                "in the last SAMBAND_HISTORY_DAYS days; each as it may leave now under the person's grade "
                "(docs/delivery.md, Pull).",
                "security": read,
                "parameters": [
                    {
                        "name": "after",
                        "in": "query",
                        "description": "the `next` of the page before; leave out to start from the oldest kept",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "description": "events per page",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                    },
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "description": 'the ETag of the page before, `"<after>"`: 304 when nothing is new',
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        **_response("a page of events, in order per person", "EventsPage"),
                        "headers": {"ETag": {"schema": {"type": "string"}, "description": '`"<next>"`'}},
                    },
                    "304": _response("nothing new after the cursor (If-None-Match matched)"),
                    "400": _response(
                        "the cursor or the limit is not valid (error request.invalid_cursor, request.invalid_limit)",
                        "Error",
                    ),
                    "404": _NOT_FOUND,
                    "429": {
                        **_response(
                            "polled again within SAMBAND_PULL_POLL_INTERVAL_S of a page that reached the end "
                            "(error events.polled_too_fast)",
                            "Error",
                        ),
                        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
                    },
                    "503": _response("this worker runs no delivery stage (error events.unavailable)", "Error"),
                    **_ERRORS,
                },
            },
        },
    }
