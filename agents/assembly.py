"""A worker, put together: the Faust app that hosts it, the runtime its stages share, its stages.

    app = build_worker(settings)                  # every stage, the web routes, the alert watch
    app = build_worker(settings, ["route"])       # the router alone (the benchmarks)

The stages are built here, not at import (agents/ingest, agents/routing, agents/delivery: each
`build(settings, runtime) -> service`). They run as one service under the app, after the
measure of the process's event-loop lag (agents/loop_lag.py), the trim of its C heap
(agents/heap_trim.py) and the worker's subscriptions follower: started in the order given,
stopped in reverse.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import faust
from mode import Service, ServiceT

from agents import delivery, ingest, routing
from agents.alerts import watch
from agents.app import create_app
from agents.config import Settings
from agents.heap_trim import HeapTrim
from agents.loop_lag import LoopLag
from agents.stage_runtime import FollowSubscriptions, StageRuntime
from agents.web.server import add_bus_routes
from bus.batches import BatchService

STAGES: dict[str, Callable[[Settings, StageRuntime], BatchService]] = {
    "ingest": ingest.build,
    "route": routing.build,
    "deliver": delivery.build,
}


class Stages(Service):
    """The worker's subscriptions follower and its stages, as one service under the app."""

    def __init__(self, services: list[Service], **kwargs: Any):
        super().__init__(**kwargs)
        self.services = services

    def on_init_dependencies(self) -> list[ServiceT]:
        return list(self.services)


def build_stages(settings: Settings, names: Sequence[str] = tuple(STAGES)) -> tuple[StageRuntime, list[Service]]:
    """The runtime, and the loop's lag measure, the heap trim, the follower and the stages `names` in start order."""
    unknown = [name for name in names if name not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage {', '.join(unknown)}: the stages are {', '.join(STAGES)}")
    runtime = StageRuntime.of(settings)
    runtime.stages = [STAGES[name](settings, runtime) for name in names]
    return runtime, [
        LoopLag(),
        HeapTrim(settings.heap_trim_seconds),
        FollowSubscriptions(runtime.subscriptions),
        *runtime.stages,
    ]


def build_worker(settings: Settings, names: Sequence[str] = tuple(STAGES)) -> faust.App:
    app = create_app(settings)
    runtime, services = build_stages(settings, names)

    class WorkerStages(Stages):  # Faust starts the services it is given as classes
        def __init__(self, **kwargs: Any):
            super().__init__(services, **kwargs)

    app.service(WorkerStages)
    add_bus_routes(app, settings, runtime)
    watch.install(app, settings)
    return app
