"""The operations dashboard, served by every worker: no front-end build, static HTML + vanilla JS
(charts are SVG drawn by the page itself).

    add_routes(web_app, settings, bootstrap)

- `GET /dashboard`: the page (agents/web/static/dashboard.html, dashboard.js); with the bearer
  token the operator types into it (kept in the tab's sessionStorage), it polls:
- `GET /api/overview` (scope `operations:read`, as `/api/trace`): throughput per topic (records/s
  since the previous call), consumer-group lag, per-subscription delivery health
  (agents/delivery_health.py), the backfills asked for and how far they have come
  (agents/routing/backfill.py), the dead letters of every stage in the last
  SAMBAND_DEAD_LETTER_WINDOW_S with the limits passed (agents/dead_letter_health.py), and the
  short history the worker samples every SAMBAND_DASHBOARD_SAMPLE_S (agents/web/history.py);
- `GET /api/trace/{event_id}`: one event's path (agents/event_trace.py), with its timeline;
- `POST /api/subscriptions/{id}/replay`: replays the subscription's delivery dead letters as
  `samband dlq replay --subscription` does (same idempotency keys; those delivered since are
  skipped); `POST /api/dead-letters/{id}/replay` replays one, as `samband dlq replay ID`.
  Both need a bearer token with scope `dlq:replay` (SAMBAND_API_TOKENS).

Everything shown is ids, counts, times and reason codes: no personal data.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from pathlib import Path

import structlog
from aiohttp import web

from agents.commands.topics_and_lag import bus_groups, lag_report
from agents.config import Settings
from agents.dead_letter_health import DeadLetterWindow, over_limits, parse_limits
from agents.delivery_health import subscription_health
from agents.event_trace import timeline, trace_event
from agents.routing.backfill import summaries
from agents.subscriptions.http_api import authorise
from agents.subscriptions.tokens import DLQ_REPLAY, OPERATIONS_READ
from agents.web.history import History
from bus.inspector import BrokerUnreachable, KafkaInspector, SharedInspector
from bus.topics import topic_names

log = structlog.get_logger(__name__)

STATIC = Path(__file__).with_name("static")
DASHBOARD_KEY = web.AppKey("dashboard", "Dashboard")


class Dashboard:
    def __init__(self, settings: Settings, bootstrap: str):
        self.app_id = settings.app_id
        self.bootstrap = bootstrap
        self.history = History(settings.app_id, settings.dashboard_sample_s, settings.dashboard_history_s)
        self.window = DeadLetterWindow(settings.dead_letter_window_s)
        self.limits = parse_limits(settings.dead_letter_limits)
        self.dead_letters: dict = {"window_s": self.window.window_s, "stages": [], "recent": [], "problems": []}
        self._kafka = SharedInspector(bootstrap)
        self._previous: tuple[float, dict[str, int]] | None = None  # (time, records written per topic)
        self._sampling: asyncio.Task | None = None

    async def inspector(self) -> KafkaInspector:
        return await self._kafka.get()

    async def start(self, _web_app: web.Application | None = None) -> None:
        self._sampling = asyncio.create_task(self._sample_forever())

    async def close(self, _web_app: web.Application | None = None) -> None:
        if self._sampling is not None:
            self._sampling.cancel()
            # A sample's Kafka clients close as it is cancelled; a stop never waits long for them.
            await asyncio.wait([self._sampling], timeout=5)
        await self._kafka.close()

    async def _sample_forever(self) -> None:
        """A sample of the history and of the dead letters every interval, whoever is looking. The
        first comes one interval after the start: the stages start first, undisturbed."""
        while True:
            await asyncio.sleep(self.history.interval_s)  # the sampling pace, not a wait for an outcome
            try:
                await self.sample()
            except BrokerUnreachable as exc:
                await self._kafka.close()
                log.warning("dashboard.sample_skipped", problem=str(exc))
            except Exception:  # a sample lost must not end the sampling
                log.exception("dashboard.sample_failed")

    async def sample(self) -> None:
        self.history.add(await self.history.take(await self.inspector()))
        await self.window.refresh(self.bootstrap, self.app_id)
        counts, recent = self.window.counts(), self.window.newest()
        self.dead_letters = {
            "window_s": self.window.window_s,
            "stages": [
                {"stage": c.stage, "total": c.total, "reasons": [{"reason": r, "count": n} for r, n in c.top(20)]}
                for c in counts.values()
            ],
            "recent": recent,
            "problems": over_limits(counts, self.limits),
        }

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
            await self._kafka.close()
            return {"broker": {"reachable": False, "problem": str(exc)}, "history": self.history.as_json()}
        subscriptions = [asdict(row) for row in await subscription_health(self.bootstrap, self.app_id)]
        backfills = await summaries(self.bootstrap, topic_names(self.app_id))
        return {
            "broker": {"reachable": True},
            "at": time.time(),
            "throughput": throughput,
            "lag": lag,
            "subscriptions": subscriptions,
            "backfills": [b.as_json() for b in backfills],
            "dead_letters": self.dead_letters,
            "history": self.history.as_json(),
        }


def add_routes(web_app: web.Application, settings: Settings, bootstrap: str) -> None:
    dashboard = Dashboard(settings, bootstrap)
    web_app[DASHBOARD_KEY] = dashboard
    web_app.on_startup.append(dashboard.start)
    web_app.on_cleanup.append(dashboard.close)
    web_app.router.add_get("/dashboard", page)
    web_app.router.add_get("/dashboard/{name:dashboard\\.(js|css)}", asset)
    web_app.router.add_get("/api/overview", overview)
    web_app.router.add_get("/api/trace/{event_id}", trace)
    web_app.router.add_post("/api/subscriptions/{id}/replay", replay)
    web_app.router.add_post("/api/dead-letters/{id}/replay", replay_one)


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
    body = found.as_json() | {"timeline": [{"at": at, "step": step} for at, step in timeline(found)]}
    return web.json_response(body, status=200 if found.found else 404)


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


async def replay_one(request: web.Request) -> web.Response:
    if (denied := authorise(request, DLQ_REPLAY)[2]) is not None:
        return denied
    from agents.commands.dlq import DeadLetterNotFound, DlqError
    from agents.commands.dlq import replay as replay_dead_letters

    dlq_id = request.match_info["id"]
    said: list[str] = []
    try:
        replayed, _ = await replay_dead_letters(dlq_id, None, False, say=said.append)
    except DeadLetterNotFound:
        return web.json_response(
            {"error": "dead_letter.not_found", "message": "no delivery dead letter with this id"}, status=404
        )
    except DlqError as exc:  # it does not open with this bus's key: says so, with no content
        return web.json_response({"error": "dead_letter.unreadable", "message": str(exc)}, status=409)
    log.info("dashboard.replayed", dlq_id=dlq_id, replayed=replayed)
    return web.json_response({"dead_letter": dlq_id, "replayed": replayed, "said": said})
