"""The bus's HTTP routes on the worker's own web server (Faust's aiohttp app, `app.web.web_app`).

Imported by `samband worker` (AGENT_MODULES): the subscriptions API with its OpenAPI
document (agents/subscriptions/api.py), the operations endpoints /healthz, /readyz and
/metrics (agents/web/operations.py), the operations dashboard /dashboard with its
/api/overview, /api/trace and replay endpoints (agents/web/dashboard.py) and, unless an
external registry is configured, the
schema registry read API (agents/web/schema_registry.py). Faust freezes the router only when
the server starts, so routes added at import are served.
"""

from __future__ import annotations

from agents.app import app
from agents.config import SettingsError, bootstrap_servers, get_settings
from agents.routing.agent import follower, index, topics
from agents.subscriptions.api import SubscriptionsApi, add_routes, authorise
from agents.subscriptions.audit import AuditLog
from agents.subscriptions.store import write
from agents.subscriptions.tokens import TokenConfigError, load_tokens
from agents.web import dashboard, operations, schema_registry
from schemas.catalog import catalog
from schemas.registry import CatalogRegistry

settings = get_settings()


async def write_subscription(sub_id: str, value: bytes | None) -> int:
    # Its own producer, as the CLI's: not Faust's, which the delivery stage also writes Kafka
    # subscribers' topics with. Once, in CI, a write to a topic the broker was auto-creating
    # left that producer retrying for minutes, and API writes queued behind it never returned.
    return await write(bootstrap_servers(), topics.subscriptions, [(sub_id, value)])


try:
    tokens = load_tokens(settings.api_tokens, settings.api_tokens_file)
except TokenConfigError as exc:
    raise SettingsError(str(exc)) from None

add_routes(
    app.web.web_app,
    SubscriptionsApi(index, follower, write_subscription, tokens, AuditLog(bootstrap_servers(settings), topics.audit)),
)
operations.add_routes(app.web.web_app, bootstrap_servers(settings), settings.ready_max_lag)
dashboard.add_routes(app.web.web_app, settings.app_id, bootstrap_servers(settings))
if not settings.schema_registry_url:
    schema_registry.add_routes(
        app.web.web_app, CatalogRegistry(catalog()), may_register=lambda request: authorise(request, None)[2] is None
    )
