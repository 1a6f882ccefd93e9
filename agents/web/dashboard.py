"""The operations dashboard, served by every worker: no front-end build, static HTML + vanilla JS.

    add_routes(web_app, app_id, bootstrap)

- `GET /dashboard`: the page (agents/web/static/dashboard.html, dashboard.js); with the bearer
  token the operator types into it (kept in the tab's sessionStorage), it polls:
- `GET /api/overview` (scope `operations:read`, as `/api/trace`): throughput per topic (records/s since the previous call), consumer-group
  lag, and per-subscription delivery health (agents/delivery_health.py), all from Kafka;
- `GET /api/trace/{event_id}`: one event's path (agents/event_trace.py);
- `POST /api/subscriptions/{id}/replay`: replays the subscription's delivery dead letters as
  `samband dlq replay --subscription` does (same idempotency keys; those delivered since are
  skipped). Needs a bearer token with scope `dlq:replay` (SAMBAND_API_TOKENS).

Everything shown is ids, counts, times and reason codes: no personal data.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import structlog
from aiohttp import web

from agents.commands.topics_and_lag import bus_groups, lag_report
from agents.delivery_health import subscription_health
from agents.event_trace import trace_event
from agents.subscriptions.http_api import authorise
from agents.subscriptions.tokens import DLQ_REPLAY, OPERATIONS_READ
from bus.inspector import BrokerUnreachable, KafkaInspector, SharedInspector

log = structlog.get_logger(__name__)

STATIC = Path(__file__).with_name("static")
DASHBOARD_KEY = web.AppKey("dashboard", "Dashboard")


class Dashboard:
    def __init__(self, app_id: str, bootstrap: str):
        self.app_id = app_id
        self.bootstrap = bootstrap
        self._kafka = SharedInspector(bootstrap)
        self._previous: tuple[float, dict[str, int]] | None = None  # (time, records written per topic)

    async def inspector(self) -> KafkaInspector:
        return await self._kafka.get()

    async def close(self, _web_app: web.Application | None = None) -> None:
        await self._kafka.close()

    async def throughput(self, kafka: KafkaInspector) -> list[dict]:
        offsets = await kafka.offsets(await kafka.topic_partitions(f"{self.app_id}-"))
        written: dict[str, int] = {}
        for row in offsets:
            written[row.topic] = written.get(row.topic, 0) + row.end
        now, previous = time.monotonic(), self._previous
        self._previous = (now, written)
        rows = []
        for topic, total in sorted(written.items()):
            rate = None
            if previous is not None and topic in previous[1] and now > previous[0]:
                rate = round((total - previous[1][topic]) / (now - previous[0]), 2)
            rows.append({"topic": topic, "records": total, "rate_per_second": rate})
        return rows

    async def overview(self) -> dict:
        try:
            kafka = await self.inspector()
            throughput = await self.throughput(kafka)
            lag = [
                {"group": r.group, "topic": r.topic, "lag": r.lag}
                for r in await lag_report(kafka, await bus_groups(kafka, self.app_id))
            ]
        except BrokerUnreachable as exc:
            await self.close()
            return {"broker": {"reachable": False, "problem": str(exc)}}
        subscriptions = [asdict(row) for row in await subscription_health(self.bootstrap, self.app_id)]
        return {
            "broker": {"reachable": True},
            "at": time.time(),
            "throughput": throughput,
            "lag": lag,
            "subscriptions": subscriptions,
        }


def add_routes(web_app: web.Application, app_id: str, bootstrap: str) -> None:
    dashboard = Dashboard(app_id, bootstrap)
    web_app[DASHBOARD_KEY] = dashboard
    web_app.on_cleanup.append(dashboard.close)
    web_app.router.add_get("/dashboard", page)
    web_app.router.add_get("/dashboard/{name:dashboard\\.(js|css)}", asset)
    web_app.router.add_get("/api/overview", overview)
    web_app.router.add_get("/api/trace/{event_id}", trace)
    web_app.router.add_post("/api/subscriptions/{id}/replay", replay)


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "dashboard.html")


async def asset(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / request.match_info["name"])


async def overview(request: web.Request) -> web.Response:
    if (denied := authorise(request, OPERATIONS_READ)[2]) is not None:
        return denied
    return web.json_response(await request.app[DASHBOARD_KEY].overview())


async def trace(request: web.Request) -> web.Response:
    if (denied := authorise(request, OPERATIONS_READ)[2]) is not None:
        return denied
    dashboard = request.app[DASHBOARD_KEY]
    found = await trace_event(dashboard.bootstrap, dashboard.app_id, request.match_info["event_id"])
    return web.json_response(found.as_json(), status=200 if found.found else 404)


async def replay(request: web.Request) -> web.Response:
    if (denied := authorise(request, DLQ_REPLAY)[2]) is not None:
        return denied
    from agents.commands.dlq import replay as replay_dead_letters

    sub = request.match_info["id"]
    skipped: list[str] = []
    replayed, chosen = await replay_dead_letters(None, sub, False, say=skipped.append)
    log.info("dashboard.replayed", subscription=sub, replayed=replayed, chosen=chosen)
    return web.json_response(
        {"subscription": sub, "replayed": replayed, "dead_letters": chosen, "skipped": len(skipped)}
    )
