"""`POST /api/person-report`: a person's access report (GDPR article 15) for a citizen portal.

    add_routes(web_app, settings, bootstrap, audit)

The body is `{"person": "<identity number>"}`: never in the URL, where proxies and access logs
would keep it. It needs a bearer token with the scope `persons:report` (a portal's token needs no
other). Each request is audit-logged under the token's name (action `person_report`, via `api`,
with the person's pseudonym, so a DPO can see whose reports were asked for; a refused number
too, with its reason code). The answer is
the report's JSON (agents/person_report.py), or its HTML page when the request accepts
`text/html`. The number becomes the bus's pseudonym at once and is never stored or logged.
"""

from __future__ import annotations

import json

from aiohttp import web

from agents.config import Settings
from agents.person_report import format_html, person_report
from agents.subscriptions.audit import AuditLog
from agents.subscriptions.http_api import authorise
from agents.subscriptions.tokens import PERSON_REPORT
from schemas import json_text
from schemas.identity import InvalidIdentity, parse_identity
from schemas.pseudonym import pseudonym

REPORTS_KEY = web.AppKey("person_reports", dict)


def add_routes(web_app: web.Application, settings: Settings, bootstrap: str, audit: AuditLog) -> None:
    web_app[REPORTS_KEY] = {"settings": settings, "bootstrap": bootstrap, "audit": audit}
    web_app.router.add_post("/api/person-report", report)


def _refused(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def report(request: web.Request) -> web.Response:
    _, token, denied = authorise(request, PERSON_REPORT)
    if denied is not None:
        return denied
    assert token is not None  # authorise refuses a request without one
    try:
        body = await request.json(loads=json_text.loads)
    except ValueError:
        return _refused(400, "request.invalid_json", "the body is not JSON")
    number = body.get("person") if isinstance(body, dict) else None
    if not isinstance(number, str):
        return _refused(400, "request.person_missing", 'the body must be {"person": "<identity number>"}')
    where = request.app[REPORTS_KEY]
    settings: Settings = where["settings"]
    audit: AuditLog = where["audit"]
    entry = {"name": token.name, "owner": token.owner, "action": "person_report", "subscription": None, "via": "api"}
    try:
        parse_identity(number)
    except InvalidIdentity as exc:  # its message never repeats the number
        await audit.record_all([entry | {"outcome": exc.reason}])
        return _refused(422, exc.reason, str(exc))
    person = pseudonym(number, settings.pseudonym_key.encode())
    found = await person_report(where["bootstrap"], settings.app_id, person)
    await audit.record_all([entry | {"outcome": "ok", "person": person}])
    if "text/html" in request.headers.get("Accept", ""):
        return web.Response(text=format_html(found), content_type="text/html")
    return web.Response(text=json.dumps(found.as_json(), ensure_ascii=False), content_type="application/json")
