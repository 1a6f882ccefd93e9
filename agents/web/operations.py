"""Operations endpoints of a worker: `/metrics`, `/healthz`, `/readyz`.

    add_routes(web_app, app, ready_max_lag=settings.ready_max_lag)

- `GET /healthz`: liveness. 200 whenever the process's event loop answers (this handler runs on it).
- `GET /readyz`: readiness. 200 when the Faust consumer has partitions assigned, is not
  rebalancing or recovering tables, and the group's lag on this worker's partitions is at most
  `ready_max_lag`; 503 otherwise. The JSON body says why.
- `GET /metrics`: agents.metrics in Prometheus text format; the consumer-lag gauge is refreshed
  from the broker on each scrape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import faust
import structlog
from aiohttp import web
from aiokafka import TopicPartition
from faust.exceptions import ConsumerNotStarted

from agents import metrics
from agents.offsets import BrokerUnreachable, KafkaInspector

log = structlog.get_logger(__name__)

OPERATIONS_KEY = web.AppKey("operations", "Operations")


@dataclass
class Readiness:
    ready: bool
    assigned_partitions: int = 0
    lag: int | None = None
    max_lag: int = 0
    reasons: list[str] = field(default_factory=list)


class Operations:
    """What the handlers need: the Faust app, the lag bound, and a broker inspector opened on first use."""

    def __init__(self, app: faust.App, ready_max_lag: int):
        self.app = app
        self.ready_max_lag = ready_max_lag
        self._inspector: KafkaInspector | None = None

    def bootstrap(self) -> str:
        return ",".join(f"{url.host}:{url.port or 9092}" for url in self.app.conf.broker)

    async def inspector(self) -> KafkaInspector:
        if self._inspector is None:
            self._inspector = await KafkaInspector(self.bootstrap(), timeout=5.0).__aenter__()
        return self._inspector

    async def close(self, _web_app: web.Application | None = None) -> None:
        if self._inspector is not None:
            await self._inspector.close()
            self._inspector = None

    def consumed_partitions(self) -> list[TopicPartition]:
        """This worker's assigned partitions that the group commits on (table changelogs are not).

        Raises ConsumerNotStarted before the worker has started its consumer.
        """
        changelogs = self.app.tables.changelog_topics
        return sorted(TopicPartition(tp.topic, tp.partition) for tp in self.app.consumer.assignment() if tp.topic not in changelogs)

    async def own_lag(self) -> list:
        partitions = self.consumed_partitions()
        if not partitions:
            return []
        return await (await self.inspector()).group_lag(self.app.conf.id, partitions)

    async def readiness(self) -> Readiness:
        state = Readiness(ready=False, max_lag=self.ready_max_lag)
        try:
            partitions = self.consumed_partitions()
        except ConsumerNotStarted:
            state.reasons.append("consumer not started")
            return state
        state.assigned_partitions = len(partitions)
        if not partitions:
            state.reasons.append("no partitions assigned")
        if self.app.rebalancing:
            state.reasons.append("rebalancing")
        if self.app.in_recovery:
            state.reasons.append("recovering tables")
        if partitions:
            try:
                state.lag = sum(row.lag for row in await self.own_lag())
            except BrokerUnreachable as exc:
                await self.close()
                state.reasons.append(str(exc))
            else:
                if state.lag > self.ready_max_lag:
                    state.reasons.append(f"lag {state.lag} above {self.ready_max_lag}")
        state.ready = not state.reasons
        return state

    async def refresh_lag_gauge(self) -> None:
        try:
            rows = await self.own_lag()
        except BrokerUnreachable:
            await self.close()
            log.warning("consumer lag not refreshed: broker unreachable")
            return
        except ConsumerNotStarted:
            rows = []
        metrics.CONSUMER_LAG.clear()
        for row in rows:
            metrics.set_consumer_lag(row.group, row.topic, row.partition, row.lag)


def add_routes(web_app: web.Application, app: faust.App, ready_max_lag: int) -> None:
    operations = Operations(app, ready_max_lag)
    web_app[OPERATIONS_KEY] = operations
    web_app.on_cleanup.append(operations.close)
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_get("/readyz", readyz)
    web_app.router.add_get("/metrics", metrics_page)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    state = await request.app[OPERATIONS_KEY].readiness()
    return web.json_response(asdict(state), status=200 if state.ready else 503)


async def metrics_page(request: web.Request) -> web.Response:
    await request.app[OPERATIONS_KEY].refresh_lag_gauge()
    body, content_type = metrics.exposition()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response
