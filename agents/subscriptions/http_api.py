"""HTTP API for subscriptions: `/subscriptions` with bearer tokens, tenants and scopes (described in
the worker's `/openapi.json`: agents/subscriptions/openapi.py).

    add_routes(web_app, SubscriptionsApi(follower, write, tokens, audit))

GET /subscriptions, GET /subscriptions/{id}        scope subscriptions:read
POST /subscriptions, PUT/DELETE /subscriptions/{id} scope subscriptions:write

Tokens and their tenants: agents/subscriptions/tokens.py. A token sees and changes only the
subscriptions it owns; another tenant's are 404, as if they did not exist. Grants that widen
access need the operator scope (403 auth.operator_required, naming the grants). Every write
request of a known token is audit-logged (agents/subscriptions/audit.py), refused ones too.
A write goes to the subscriptions topic and the reply waits until this worker has applied
it, so a GET right after sees the change (other workers see it within a second).
Errors are JSON `{"error": <stable code>, "message": ..., "problems": [...]}`.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from pydantic import ValidationError

from agents.subscriptions.audit import AuditLog
from agents.subscriptions.files import validation_problems
from agents.subscriptions.model import Subscription
from agents.subscriptions.store import SubscriptionFollower
from agents.subscriptions.tokens import OPERATOR, READ, WRITE, ApiToken
from schemas import json_text

__all__ = ["API_KEY", "SubscriptionsApi", "add_routes", "authorise", "error_response", "not_found"]

# Writes (id, JSON or None) to the subscriptions topic and returns the record's offset.
Writer = Callable[[str, bytes | None], Awaitable[int]]


@dataclass
class SubscriptionsApi:
    follower: SubscriptionFollower  # the worker's: `current` (id -> JSON) and `subscription(id)`
    write: Writer
    tokens: list[ApiToken]
    audit: AuditLog

    def token_of(self, request: web.Request) -> ApiToken | None:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        found = None
        for token in self.tokens:  # compare with every token: no timing hint
            # aiohttp keeps undecodable header bytes as surrogates: encode them back, never fail
            if hmac.compare_digest(token.token.encode(), presented.encode("utf-8", "surrogateescape")):
                found = token
        return found

    def holds(self, token: ApiToken, sub_id: str) -> bool:
        """Whether the subscription exists and the token owns it (without parsing it)."""
        return sub_id in self.follower.current and token.owns(sub_id)

    def owned(self, token: ApiToken, sub_id: str) -> Subscription | None:
        """The subscription if it exists and the token owns it: another tenant's is as good as absent."""
        return self.follower.subscription(sub_id) if token.owns(sub_id) else None


API_KEY = web.AppKey("subscriptions_api", SubscriptionsApi)


def add_routes(web_app: web.Application, api: SubscriptionsApi) -> None:
    web_app[API_KEY] = api
    web_app.router.add_get("/subscriptions", list_subscriptions)
    web_app.router.add_post("/subscriptions", create_subscription)
    web_app.router.add_get("/subscriptions/{id}", get_subscription)
    web_app.router.add_put("/subscriptions/{id}", put_subscription)
    web_app.router.add_delete("/subscriptions/{id}", delete_subscription)


def error_response(status: int, code: str, message: str, problems: list[str] | None = None, **headers) -> web.Response:
    body = {"error": code, "message": message}
    if problems:
        body["problems"] = problems
    return web.json_response(body, status=status, headers=headers or None)


def authorise(request: web.Request, scope: str | None) -> tuple[SubscriptionsApi, ApiToken | None, web.Response | None]:
    """The API, the request's token, and the answer that refuses it (None when it may go on).
    Every token-protected endpoint of the worker goes through here; `scope` None: any valid token."""
    api = request.app[API_KEY]
    token = api.token_of(request)
    if token is None:
        return (
            api,
            None,
            error_response(
                401,
                "auth.unauthenticated",
                "a valid bearer token is required",
                **{"WWW-Authenticate": 'Bearer realm="samband"'},
            ),
        )
    if scope is not None and scope not in token.scopes:
        return api, token, error_response(403, "auth.scope_missing", f"the token lacks scope {scope}")
    return api, token, None


def not_found() -> web.Response:
    return error_response(404, "subscription.not_found", "no subscription with this id")


async def _parse(request: web.Request, sub_id: str | None = None) -> Subscription | web.Response:
    try:
        body = await request.json(loads=json_text.loads)
    except ValueError as exc:
        return error_response(400, "request.invalid_json", f"the body is not JSON: {exc}")
    if not isinstance(body, dict):
        return error_response(422, "subscription.invalid", "the body must be a subscription object")
    if sub_id is not None and body.setdefault("id", sub_id) != sub_id:
        return error_response(422, "subscription.id_mismatch", "the id in the body differs from the id in the path")
    try:
        return Subscription.model_validate(body)
    except ValidationError as exc:
        return error_response(422, "subscription.invalid", "the subscription is invalid", validation_problems(exc))


def _operator_needed(token: ApiToken, new: Subscription, current: Subscription | None) -> web.Response | None:
    grants = token.grants_needing_operator(new, current)
    if not grants:
        return None
    return error_response(
        403, "auth.operator_required", f"these grants need the scope {OPERATOR}: {'; '.join(grants)}", grants
    )


def _body(sub: Subscription) -> web.Response:
    return web.Response(body=sub.to_json(), content_type="application/json")


async def _store(api: SubscriptionsApi, sub_id: str, value: bytes | None) -> None:
    await api.follower.wait_applied(await api.write(sub_id, value))


Write = Callable[[SubscriptionsApi, ApiToken, web.Request], Awaitable[tuple[str, str | None, web.Response]]]


async def _audited(request: web.Request, write: Write) -> web.Response:
    """Run a write for a known token with the write scope, and audit-log it whatever its outcome."""
    api, token, denied = authorise(request, WRITE)
    if token is None:
        return denied
    if denied:
        action = {"POST": "create", "PUT": "put", "DELETE": "delete"}[request.method]
        sub_id, response = request.match_info.get("id"), denied
    else:
        action, sub_id, response = await write(api, token, request)
    outcome = "ok" if response.status < 400 else json.loads(response.body)["error"]
    await api.audit.record(
        name=token.name, owner=token.owner, action=action, subscription=sub_id, outcome=outcome, via="api"
    )
    return response


async def list_subscriptions(request: web.Request) -> web.Response:
    api, token, denied = authorise(request, READ)
    if denied:
        return denied
    subs = [json.loads(found) for sub_id, found in sorted(api.follower.current.items()) if token.owns(sub_id)]
    return web.json_response({"subscriptions": subs})


async def get_subscription(request: web.Request) -> web.Response:
    api, token, denied = authorise(request, READ)
    if denied:
        return denied
    sub = api.owned(token, request.match_info["id"])
    return not_found() if sub is None else _body(sub)


async def create_subscription(request: web.Request) -> web.Response:
    return await _audited(request, _create)


async def _create(api: SubscriptionsApi, token: ApiToken, request: web.Request):
    sub = await _parse(request)
    if isinstance(sub, web.Response):
        return "create", None, sub
    if not token.owns(sub.id):
        return (
            "create",
            sub.id,
            error_response(403, "auth.id_not_owned", "this token may create only subscriptions whose id it owns"),
        )
    if sub.id in api.follower.current:
        return (
            "create",
            sub.id,
            error_response(409, "subscription.exists", "a subscription with this id exists; PUT replaces it"),
        )
    refused = _operator_needed(token, sub, None)
    if refused:
        return "create", sub.id, refused
    await _store(api, sub.id, sub.to_json())
    response = _body(sub)
    response.set_status(201)
    response.headers["Location"] = f"/subscriptions/{sub.id}"
    return "create", sub.id, response


async def put_subscription(request: web.Request) -> web.Response:
    return await _audited(request, _put)


async def _put(api: SubscriptionsApi, token: ApiToken, request: web.Request):
    sub_id = request.match_info["id"]
    current = api.owned(token, sub_id)
    action = "create" if current is None else "replace"
    if not token.owns(sub_id):
        return action, sub_id, not_found()
    sub = await _parse(request, sub_id)
    if isinstance(sub, web.Response):
        return action, sub_id, sub
    refused = _operator_needed(token, sub, current)
    if refused:
        return action, sub_id, refused
    await _store(api, sub.id, sub.to_json())
    response = _body(sub)
    response.set_status(201 if current is None else 200)
    return action, sub_id, response


async def delete_subscription(request: web.Request) -> web.Response:
    return await _audited(request, _delete)


async def _delete(api: SubscriptionsApi, token: ApiToken, request: web.Request):
    sub_id = request.match_info["id"]
    if api.owned(token, sub_id) is None:
        return "delete", sub_id, not_found()
    await _store(api, sub_id, None)
    return "delete", sub_id, web.Response(status=204)
