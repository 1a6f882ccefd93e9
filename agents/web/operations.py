"""Operations endpoints of a worker: `/metrics`, `/healthz`, `/readyz`.

    add_routes(web_app, bootstrap, ready_max_lag=settings.ready_max_lag, batch_consumers=lambda: runtime.stages)

- `GET /healthz`: liveness. 200 whenever the process's event loop answers (this handler runs on it):
  `{"status": "alive"}`, or `{"status": "degraded", "reasons": [...]}` while a stage waits for a
  broker it lost (bus/batches.py): the process recovers by itself once the broker is back,
  so it is not restarted for it. A stage that truly dies ends the process instead.
- `GET /readyz`: readiness. 200 when each stage started in this worker (its batch consumer:
  `<app id>-ingest`, `<app id>-router`, `<app id>-delivery`; bus/batches.py) has started, is still
  running and has recovered its state, the stages hold partitions between them (a worker beyond
  the partition count holds none, and is not ready), and each group's lag on this worker's
  partitions is at most `ready_max_lag`; 503 otherwise. The JSON body says why, with the lag
  per group.
- `GET /metrics`: agents.metrics in Prometheus text format; the consumer-lag gauge (every group
  above, this worker's partitions) is refreshed from the broker on each scrape. The text is sent
  in pieces as it is made; a scrape not read whole within SCRAPE_SECONDS is cut off, and at most
  SCRAPES_AT_ONCE are sent at a time (others get 503), so a reader that stops reading holds
  neither other scrapes nor memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import structlog
from aiohttp import web
from aiokafka import TopicPartition

from agents import metrics
from bus.inspector import BrokerUnreachable, KafkaInspector, SharedInspector

log = structlog.get_logger(__name__)

OPERATIONS_KEY = web.AppKey("operations", "Operations")
SCRAPE_SECONDS = 30.0  # the longest a scrape may take to be read (Prometheus's own timeout is 10 s)
SCRAPES_AT_ONCE = 4  # scrapes being sent at a time; each holds a copy of the subscriptions' index


@dataclass
class Readiness:
    ready: bool
    assigned_partitions: int = 0
    lag: int | None = None  # summed over the groups
    lag_by_group: dict[str, int] = field(default_factory=dict)
    max_lag: int = 0
    reasons: list[str] = field(default_factory=list)


class Operations:
    """What the handlers need: the worker's batch consumers, the lag bound, and a broker inspector
    opened on first use."""

    def __init__(self, bootstrap: str, ready_max_lag: int, batch_consumers: Callable[[], list]):
        self.bootstrap = bootstrap
        self.ready_max_lag = ready_max_lag
        self.batch_consumers = (
            batch_consumers  # each with .group, .finished, .assigned() (None until started), .recovering, .outage
        )
        self._kafka = SharedInspector(bootstrap)
        # One lag refresh at a time: the gauge is cleared and filled again for each, which another
        # scrape's registry text, made meanwhile in a thread, would catch half done.
        self.scraping = asyncio.Lock()
        self.scrapes_sent = 0  # scrapes being sent now (at most SCRAPES_AT_ONCE)

    async def inspector(self) -> KafkaInspector:
        return await self._kafka.get()

    async def close(self, _web_app: web.Application | None = None) -> None:
        await self._kafka.close()

    def outages(self) -> list[str]:
        """One reason per batch consumer waiting for a broker it lost."""
        return [
            f"{c.group}: broker unavailable for {time.time() - c.outage.since:.0f} s ({c.outage.error})"
            for c in self.batch_consumers()
            if c.outage is not None
        ]

    def batch_partitions(self) -> dict[str, set[TopicPartition]]:
        """Per batch consumer group started in this worker, its assigned partitions."""
        return {c.group: assigned for c in self.batch_consumers() if (assigned := c.assigned()) is not None}

    async def own_lag(self) -> list:
        """Lag rows of every stage's group on this worker's partitions."""
        inspector = None
        rows = []
        for group, partitions in self.batch_partitions().items():
            if partitions:
                inspector = inspector or await self.inspector()
                rows += await inspector.group_lag(group, sorted(partitions))
        return rows

    async def readiness(self) -> Readiness:
        state = Readiness(ready=False, max_lag=self.ready_max_lag)
        if not self.batch_consumers():
            state.reasons.append("no stage started")
            return state
        state.assigned_partitions = sum(map(len, self.batch_partitions().values()))
        if not state.assigned_partitions:
            state.reasons.append("no partitions assigned")
        state.reasons += self.outages()
        for consumer in self.batch_consumers():
            if consumer.outage is not None:
                continue  # said above
            if consumer.finished:
                state.reasons.append(f"{consumer.group}: stopped")
            elif consumer.assigned() is None:
                state.reasons.append(f"{consumer.group}: consumer not started")
            elif consumer.recovering:
                state.reasons.append(f"{consumer.group}: recovering state")
        try:
            rows = await self.own_lag()
        except BrokerUnreachable as exc:
            await self.close()
            state.reasons.append(str(exc))
        else:
            for row in rows:
                state.lag_by_group[row.group] = state.lag_by_group.get(row.group, 0) + row.lag
            for group, lag in state.lag_by_group.items():
                if lag > self.ready_max_lag:
                    state.reasons.append(f"{group}: lag {lag} above {self.ready_max_lag}")
            state.lag = sum(state.lag_by_group.values()) if state.lag_by_group else None
        state.ready = not state.reasons
        return state

    async def refresh_lag_gauge(self) -> None:
        try:
            rows = await self.own_lag()
        except BrokerUnreachable:
            await self.close()
            log.warning("consumer lag not refreshed: broker unreachable")
            return
        metrics.CONSUMER_LAG.clear()
        for row in rows:
            metrics.set_consumer_lag(row.group, row.topic, row.partition, row.lag)


def add_routes(
    web_app: web.Application, bootstrap: str, ready_max_lag: int, batch_consumers: Callable[[], list]
) -> None:
    operations = Operations(bootstrap, ready_max_lag, batch_consumers)
    web_app[OPERATIONS_KEY] = operations
    web_app.on_cleanup.append(operations.close)
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_get("/readyz", readyz)
    web_app.router.add_get("/metrics", metrics_page)


async def healthz(request: web.Request) -> web.Response:
    reasons = request.app[OPERATIONS_KEY].outages()
    return web.json_response({"status": "degraded", "reasons": reasons} if reasons else {"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    state = await request.app[OPERATIONS_KEY].readiness()
    return web.json_response(asdict(state), status=200 if state.ready else 503)


async def metrics_page(request: web.Request) -> web.StreamResponse:
    operations = request.app[OPERATIONS_KEY]
    if operations.scrapes_sent >= SCRAPES_AT_ONCE:
        return web.Response(status=503, text=f"{SCRAPES_AT_ONCE} scrapes are being sent; try again\n")
    operations.scrapes_sent += 1
    pieces = metrics.exposition_pieces()
    try:
        async with operations.scraping:
            await operations.refresh_lag_gauge()
            first = await asyncio.to_thread(next, pieces)  # the registry's text, the lag gauge in it
        # Then piece by piece, each made in a thread: at 18,000 subscriptions the text takes
        # 0.36 s to make, which on the event loop would hold every stage of the process, and
        # whole it is tens of MiB (bench/bench_metrics.py, docs/operations.md).
        response = web.StreamResponse(headers={"Content-Type": metrics.CONTENT_TYPE})
        # Only the sending is timed: a piece being made in its thread is never abandoned midway.
        deadline = asyncio.get_running_loop().time() + SCRAPE_SECONDS
        try:
            async with asyncio.timeout_at(deadline):
                await response.prepare(request)
                await response.write(first)
            while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                async with asyncio.timeout_at(deadline):
                    await response.write(piece)
            async with asyncio.timeout_at(deadline):
                await response.write_eof()
        except TimeoutError:  # a reader that stopped reading: cut off (the client sees a short body)
            log.warning("metrics.scrape_cut_off", seconds=SCRAPE_SECONDS)
            if request.transport is not None:
                request.transport.close()
        return response
    finally:
        pieces.close()
        operations.scrapes_sent -= 1
