"""The bus's HTTP routes on the worker's own web server (Faust's aiohttp app, `app.web.web_app`).

`add_bus_routes(app, settings, runtime)`, called when the worker is put together
(agents/assembly.py): the worker's OpenAPI document `/openapi.json` (agents/web/openapi.py) and
the AsyncAPI document of its topics `/asyncapi.json` (agents/web/asyncapi.py), the subscriptions
API (agents/subscriptions/http_api.py), the operations endpoints /healthz, /readyz and /metrics
(agents/web/operations.py), the operations dashboard /dashboard with its /api/overview,
/api/trace and replay endpoints (agents/web/dashboard.py), a person's access report
/api/person-report (agents/web/person_report.py) and, unless an external registry is
configured, the schema registry read API (agents/web/schema_registry.py). Faust freezes the
router only when the server starts, so routes added before are served.
"""

from __future__ import annotations

import faust
from aiohttp import web

from agents.config import Settings, SettingsError
from agents.delivery.sent import SentReader
from agents.delivery.stage import DeliveryService
from agents.stage_runtime import StageRuntime
from agents.subscriptions import backfill_api, events_api
from agents.subscriptions.audit import AuditLog
from agents.subscriptions.http_api import SubscriptionsApi, add_routes, authorise
from agents.subscriptions.store import write
from agents.subscriptions.tokens import TokenConfigError, load_tokens
from agents.web import dashboard, operations, person_report, schema_registry
from agents.web.asyncapi import asyncapi_document
from agents.web.openapi import openapi_document
from bus.topics import pull_topic_prefix
from schemas.catalog import catalog
from schemas.registry import CatalogRegistry


def add_bus_routes(app: faust.App, settings: Settings, runtime: StageRuntime) -> None:
    try:
        tokens = load_tokens(settings.api_tokens, settings.api_tokens_file)
    except TokenConfigError as exc:
        raise SettingsError(str(exc)) from None

    async def write_subscription(sub_id: str, value: bytes | None) -> int:
        # A producer of its own, as the CLI's: once, in CI, a write to a topic the broker was
        # auto-creating left a shared producer retrying for minutes, and API writes queued behind it.
        return await write(runtime.bootstrap, runtime.topics.subscriptions, [(sub_id, value)])

    web_app = app.web.web_app
    serves_registry = not settings.schema_registry_url
    # Both documents are made on first request (and cached): never on the worker's start-up path.

    async def get_openapi(request: web.Request) -> web.Response:
        return web.json_response(openapi_document(with_registry=serves_registry))

    async def get_asyncapi(request: web.Request) -> web.Response:
        return web.json_response(asyncapi_document(settings.app_id, settings.subscriber_topic_prefix))

    web_app.router.add_get("/openapi.json", get_openapi)
    web_app.router.add_get("/asyncapi.json", get_asyncapi)
    audit = AuditLog(runtime.bootstrap, runtime.topics.audit)
    add_routes(web_app, SubscriptionsApi(runtime.subscriptions, write_subscription, tokens, audit))
    events_api.add_routes(web_app, _sent_reader(settings, runtime), settings.pull_poll_interval_s)
    backfill_api.add_routes(web_app, runtime.bootstrap, runtime.topics)
    operations.add_routes(web_app, runtime.bootstrap, settings.ready_max_lag, lambda: runtime.stages)
    dashboard.add_routes(web_app, settings, runtime.bootstrap)
    person_report.add_routes(web_app, settings, runtime.bootstrap, audit)
    if serves_registry:
        schema_registry.add_routes(
            web_app, CatalogRegistry(catalog()), may_register=lambda request: authorise(request, None)[2] is None
        )


def _sent_reader(settings: Settings, runtime: StageRuntime) -> SentReader | None:
    """What `GET /subscriptions/{id}/events` reads with: it needs the delivery stage's grades."""
    delivery = next((stage for stage in runtime.stages if isinstance(stage, DeliveryService)), None)
    if delivery is None:
        return None
    return SentReader(
        runtime.bootstrap,
        runtime.topics,
        pull_topic_prefix(settings.app_id),
        delivery.egress,
        settings.history_days,
        settings.pseudonym_key.encode(),
        delivery.subscriptions_read.is_set,
    )
