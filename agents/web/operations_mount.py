"""Mounts the operations endpoints (/healthz, /readyz, /metrics) on the worker's own web server.

Imported by `samband worker` (AGENT_MODULES). Faust's aiohttp driver builds its
`aiohttp.web.Application` as `app.web.web_app`, and freezes its router only when the server
starts, so routes added at import are served. Once agents/web/server.py mounts every route of
the bus, it calls agents.web.operations.add_routes itself and this module goes.
"""

from __future__ import annotations

from agents.app import app
from agents.config import get_settings
from agents.web.operations import add_routes

add_routes(app.web.web_app, app, get_settings().ready_max_lag)
