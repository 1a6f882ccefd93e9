"""`samband worker`: run the bus's Faust worker (all agents, web endpoints)."""

from __future__ import annotations

import argparse
import asyncio
import importlib

# Modules whose import registers the stages' services and the web views on the app.
AGENT_MODULES = [
    "agents.ingest",
    "agents.routing.agent",
    "agents.web.server",
    "agents.delivery.agent",
    "agents.alerts.watch",
]


def run_worker(loglevel: str = "info") -> int:
    from faust.worker import Worker

    from agents.app import app
    from agents.config import get_settings, require_keys
    from agents.logging import configure_logging

    settings = get_settings()
    require_keys(settings)
    for name in AGENT_MODULES:
        importlib.import_module(name)

    class SambandWorker(Worker):
        def _setup_logging(self) -> None:
            configure_logging(settings.log_level, settings.log_format)

        async def _stop_on_signal(self, signal) -> None:
            # A stop signal while services are still starting ends the start first: a service
            # started after the stop had passed it would run on, and the process never exit.
            starting = self._starting_fut
            if starting is not None and not starting.done():
                starting.cancel()
                await asyncio.wait([starting])
            await super()._stop_on_signal(signal)

    worker = SambandWorker(app, loglevel=loglevel, redirect_stdouts=False)
    worker.execute_from_commandline()  # returns only through SystemExit
    return 0


def _worker(args: argparse.Namespace) -> int:
    return run_worker(args.loglevel)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run the bus worker (agents, tables, web endpoints)",
        description="Runs the Faust worker. Settings come from SAMBAND_* variables (see docs/configuration.md).",
    )
    parser.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(handler=_worker)
