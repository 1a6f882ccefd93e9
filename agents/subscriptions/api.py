"""HTTP API for subscriptions: `/subscriptions` with bearer tokens and scopes, and `/openapi.json`.

    add_routes(web_app, SubscriptionsApi(index, follower, write, tokens))

GET /subscriptions, GET /subscriptions/{id}        scope subscriptions:read
POST /subscriptions, PUT/DELETE /subscriptions/{id} scope subscriptions:write

Tokens come from SAMBAND_API_TOKENS, `token=scope1+scope2,token2=scope1` (parse_tokens).
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

from agents.routing.index import RoutingIndex
from agents.subscriptions.files import validation_problems
from agents.subscriptions.model import Subscription
from agents.subscriptions.openapi import openapi_document
from agents.subscriptions.store import SubscriptionFollower

READ, WRITE = "subscriptions:read", "subscriptions:write"
DLQ_REPLAY = "dlq:replay"  # the dashboard's replay button (agents/web/dashboard.py)
SCOPES = (READ, WRITE, DLQ_REPLAY)

# Writes (id, JSON or None) to the subscriptions topic and returns the record's offset.
Writer = Callable[[str, bytes | None], Awaitable[int]]


class TokenConfigError(ValueError):
    """SAMBAND_API_TOKENS is malformed; the message never repeats a token."""


def parse_tokens(text: str) -> dict[str, frozenset[str]]:
    tokens: dict[str, frozenset[str]] = {}
    for n, item in enumerate(filter(None, (part.strip() for part in text.split(","))), start=1):
        token, sep, scopes = item.partition("=")
        wanted = frozenset(filter(None, scopes.split("+")))
        if not sep or not token or not wanted:
            raise TokenConfigError(f"SAMBAND_API_TOKENS entry {n}: expected token=scope1+scope2")
        unknown = wanted - set(SCOPES)
        if unknown:
            raise TokenConfigError(f"SAMBAND_API_TOKENS entry {n}: unknown scope(s) {sorted(unknown)}; known: {SCOPES}")
        tokens[token] = wanted
    return tokens


@dataclass
class SubscriptionsApi:
    index: RoutingIndex
    follower: SubscriptionFollower
    write: Writer
    tokens: dict[str, frozenset[str]]

    def scopes_of(self, request: web.Request) -> frozenset[str] | None:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        found = None
        for token, scopes in self.tokens.items():  # compare with every token: no timing hint
            if hmac.compare_digest(token.encode(), presented.encode()):
                found = scopes
        return found


API_KEY = web.AppKey("subscriptions_api", SubscriptionsApi)


def add_routes(web_app: web.Application, api: SubscriptionsApi) -> None:
    web_app[API_KEY] = api
    web_app.router.add_get("/openapi.json", get_openapi)
    web_app.router.add_get("/subscriptions", list_subscriptions)
    web_app.router.add_post("/subscriptions", create_subscription)
    web_app.router.add_get("/subscriptions/{id}", get_subscription)
    web_app.router.add_put("/subscriptions/{id}", put_subscription)
    web_app.router.add_delete("/subscriptions/{id}", delete_subscription)


def _error(status: int, code: str, message: str, problems: list[str] | None = None, **headers) -> web.Response:
    body = {"error": code, "message": message}
    if problems:
        body["problems"] = problems
    return web.json_response(body, status=status, headers=headers or None)


def _authorise(request: web.Request, scope: str) -> tuple[SubscriptionsApi, web.Response | None]:
    api = request.app[API_KEY]
    scopes = api.scopes_of(request)
    if scopes is None:
        return api, _error(401, "auth.unauthenticated", "a valid bearer token is required",
                           **{"WWW-Authenticate": 'Bearer realm="samband"'})
    if scope not in scopes:
        return api, _error(403, "auth.scope_missing", f"the token lacks scope {scope}")
    return api, None


async def _parse(request: web.Request, sub_id: str | None = None) -> Subscription | web.Response:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "request.invalid_json", "the body is not JSON")
    if not isinstance(body, dict):
        return _error(422, "subscription.invalid", "the body must be a subscription object")
    if sub_id is not None:
        if body.setdefault("id", sub_id) != sub_id:
            return _error(422, "subscription.id_mismatch", "the id in the body differs from the id in the path")
    try:
        return Subscription.model_validate(body)
    except ValidationError as exc:
        return _error(422, "subscription.invalid", "the subscription is invalid", validation_problems(exc))


def _body(sub: Subscription) -> web.Response:
    return web.Response(body=sub.to_json(), content_type="application/json")


async def _store(api: SubscriptionsApi, sub_id: str, value: bytes | None) -> None:
    await api.follower.wait_applied(await api.write(sub_id, value))


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def list_subscriptions(request: web.Request) -> web.Response:
    api, denied = _authorise(request, READ)
    if denied:
        return denied
    subs = [json.loads(e.subscription.to_json()) for _, e in sorted(api.index.entries.items())]
    return web.json_response({"subscriptions": subs})


async def get_subscription(request: web.Request) -> web.Response:
    api, denied = _authorise(request, READ)
    if denied:
        return denied
    entry = api.index.entries.get(request.match_info["id"])
    if entry is None:
        return _error(404, "subscription.not_found", "no subscription with this id")
    return _body(entry.subscription)


async def create_subscription(request: web.Request) -> web.Response:
    api, denied = _authorise(request, WRITE)
    if denied:
        return denied
    sub = await _parse(request)
    if isinstance(sub, web.Response):
        return sub
    if sub.id in api.index.entries:
        return _error(409, "subscription.exists", "a subscription with this id exists; PUT replaces it")
    await _store(api, sub.id, sub.to_json())
    response = _body(sub)
    response.set_status(201)
    response.headers["Location"] = f"/subscriptions/{sub.id}"
    return response


async def put_subscription(request: web.Request) -> web.Response:
    api, denied = _authorise(request, WRITE)
    if denied:
        return denied
    sub = await _parse(request, request.match_info["id"])
    if isinstance(sub, web.Response):
        return sub
    existed = sub.id in api.index.entries
    await _store(api, sub.id, sub.to_json())
    response = _body(sub)
    response.set_status(200 if existed else 201)
    return response


async def delete_subscription(request: web.Request) -> web.Response:
    api, denied = _authorise(request, WRITE)
    if denied:
        return denied
    sub_id = request.match_info["id"]
    if sub_id not in api.index.entries:
        return _error(404, "subscription.not_found", "no subscription with this id")
    await _store(api, sub_id, None)
    return web.Response(status=204)
