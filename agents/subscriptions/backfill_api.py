"""HTTP API for backfills (docs/backfill.md), beside the subscriptions API and with its tokens:

    POST   /subscriptions/{id}/backfill  {"since": "YYYY-MM-DD"}   scope subscriptions:operator
    GET    /subscriptions/{id}/backfill  how far it has come       scope subscriptions:read
    DELETE /subscriptions/{id}/backfill  cancel                     scope subscriptions:operator

A backfill sends a subscription events it did not get when they went by, so asking for one is an
operator's act, as widening a subscription is; every POST and DELETE of a known token is
audit-logged.
"""

from __future__ import annotations

import json
from datetime import date

from aiohttp import web

from agents.routing.backfill import BackfillRequest, summaries, write_request
from agents.subscriptions.http_api import API_KEY, authorise, error_response, not_found
from agents.subscriptions.tokens import OPERATOR, READ, ApiToken
from bus.topics import TopicNames

NAMES = web.AppKey("backfill_topics", TopicNames)
BOOTSTRAP = web.AppKey("backfill_bootstrap", str)


def add_routes(web_app: web.Application, bootstrap: str, names: TopicNames) -> None:
    web_app[BOOTSTRAP], web_app[NAMES] = bootstrap, names
    web_app.router.add_post("/subscriptions/{id}/backfill", ask)
    web_app.router.add_get("/subscriptions/{id}/backfill", progress)
    web_app.router.add_delete("/subscriptions/{id}/backfill", cancel)


async def _audit(request: web.Request, token: ApiToken, action: str, response: web.Response, detail: str = "") -> None:
    outcome = "ok" if response.status < 400 else json.loads(response.body)["error"]
    entry = {"name": token.name, "owner": token.owner, "action": action,
             "subscription": request.match_info["id"], "outcome": outcome, "via": "api"}  # fmt: skip
    await request.app[API_KEY].audit.record_all([{**entry, **({"detail": detail} if detail else {})}])


async def ask(request: web.Request) -> web.Response:
    _, token, denied = authorise(request, OPERATOR)
    if token is None:
        return denied  # type: ignore[return-value]
    response, detail = denied or await _ask(request, token), ""
    if response.status == 202:
        detail = f"since {json.loads(response.body)['since']}"
    await _audit(request, token, "backfill", response, detail)
    return response


async def _ask(request: web.Request, token: ApiToken) -> web.Response:
    sub_id = request.match_info["id"]
    subscription = request.app[API_KEY].owned(token, sub_id)
    if subscription is None:
        return not_found()
    try:
        body = await request.json()
    except ValueError:
        return error_response(400, "request.invalid_json", "the body is not JSON")
    since = body.get("since") if isinstance(body, dict) else None
    try:
        day = date.fromisoformat(since) if isinstance(since, str) else None
    except ValueError:
        day = None
    if day is None:
        return error_response(
            422, "backfill.invalid", 'the body is {"since": "YYYY-MM-DD"}: the first day to send again'
        )
    try:
        backfill = BackfillRequest.new(subscription, day, token.name)
    except ValueError as exc:
        return error_response(422, "backfill.invalid", str(exc))
    names = request.app[NAMES]
    await write_request(request.app[BOOTSTRAP], names.backfills, sub_id, backfill.to_json())
    return web.Response(status=202, body=backfill.to_json(), content_type="application/json")


async def progress(request: web.Request) -> web.Response:
    api, token, denied = authorise(request, READ)
    if denied:
        return denied
    assert token is not None  # (authorise answers when there is none)
    sub_id = request.match_info["id"]
    if api.owned(token, sub_id) is None:
        return not_found()
    found = await summaries(request.app[BOOTSTRAP], request.app[NAMES])
    mine = next((s for s in found if s.request.subscription == sub_id), None)
    if mine is None:
        return error_response(404, "backfill.not_found", "no backfill asked for this subscription")
    return web.json_response(mine.as_json())


async def cancel(request: web.Request) -> web.Response:
    api, token, denied = authorise(request, OPERATOR)
    if token is None:
        return denied  # type: ignore[return-value]
    response = denied
    if response is None:
        sub_id = request.match_info["id"]
        # An operator may cancel the backfill of a subscription deleted meanwhile.
        if api.owned(token, sub_id) is None and not token.operator:
            response = not_found()
        else:
            await write_request(request.app[BOOTSTRAP], request.app[NAMES].backfills, sub_id, None)
            response = web.Response(status=204)
    await _audit(request, token, "backfill-cancel", response)
    return response
