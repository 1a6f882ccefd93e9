"""`samband worker`: run a bus worker: its stages (all unless `--stage` says which), web endpoints,
alert watch (agents/assembly.py puts it together)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import threading

import structlog


def run_worker(loglevel: str = "info", stages: list[str] | None = None) -> int:
    from faust.worker import Worker

    from agents.app import leave_faust_group_on_stop, prepare_topics
    from agents.assembly import STAGES, build_worker
    from agents.config import bootstrap_servers, get_settings, require_keys
    from agents.logging import configure_logging
    from agents.worker_name import claim_worker_name

    settings = get_settings()
    require_keys(settings)
    # The bus topics that exist checked against the layout before anything runs (a wrong partition
    # count stops here, with one line that says what to do); Faust's leader topic made with the
    # layout's replication, not Faust's one replica.
    asyncio.run(prepare_topics(bootstrap_servers(settings), settings.app_id))
    asyncio.run(claim_worker_name(settings))
    app = build_worker(settings, stages or list(STAGES))

    class SambandWorker(Worker):
        def _setup_logging(self) -> None:
            configure_logging(settings.log_level, settings.log_format)

        async def _stop_on_signal(self, signal) -> None:
            _exit_after(settings.stop_timeout_seconds)
            leave_faust_group_on_stop(app)
            # A stop signal while services are still starting ends the start first: a service
            # started after the stop had passed it would run on, and the process never exit.
            starting = self._starting_fut
            if starting is not None and not starting.done():
                starting.cancel()
                # Bounded: under load the start task was seen still "cancelling" inside mode's
                # wait_until_stopped after 20 s, with every service started; the stop below ends it.
                _, still = await asyncio.wait([starting], timeout=5)
                if still:
                    structlog.get_logger(__name__).warning("worker.start_not_cancelled_in_time")
            await super()._stop_on_signal(signal)

    worker = SambandWorker(app, loglevel=loglevel, redirect_stdouts=False)
    worker.execute_from_commandline()  # returns only through SystemExit
    return 0


STOP_TIMED_OUT = 3  # the exit code of a stop that gave up what was in flight


def _exit_after(seconds: float) -> None:
    """Bound the stop. It waits for the batch in progress to be acknowledged, its state written and
    its offsets committed, and Faust's clients to close: a broker that stops answering, or a group
    that never settles, made that wait endless. A thread, not the event loop, keeps the time: the
    loop may be what is stuck. Exiting then loses nothing: what was not committed is read again."""

    def give_up() -> None:
        structlog.get_logger(__name__).error("worker.stop_timed_out", seconds=seconds)
        logging.shutdown()  # flushes the line above: os._exit flushes nothing
        os._exit(STOP_TIMED_OUT)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True  # a stop that completes in time exits without waiting for it
    timer.start()


def _worker(args: argparse.Namespace) -> int:
    from agents.app import prepare_topics
    from agents.config import bootstrap_servers, get_settings, require_keys
    from agents.logging import configure_logging
    from agents.processes import check_ports, process_count, supervise
    from bus.topics import layout

    settings = get_settings()
    requested = args.processes if args.processes is not None else settings.worker_processes
    count = process_count(requested, layout().partitions)
    if count == 1:
        return run_worker(args.loglevel, args.stage)
    configure_logging(settings.log_level, settings.log_format)
    check_ports(count, settings.web_port)
    # Checked once here, so a wrong setting or topic layout is one message, not one per process.
    require_keys(settings)
    asyncio.run(prepare_topics(bootstrap_servers(settings), settings.app_id))
    worker_args = ["--loglevel", args.loglevel, *(f"--stage={stage}" for stage in args.stage or [])]
    return supervise(count, worker_args, settings.web_port, settings.stop_timeout_seconds)


def _process_count(text: str) -> int:
    count = int(text) if text.strip().isdigit() else 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes, 1 or more, got {text}")
    return count


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run the bus worker (stages, web endpoints)",
        description="Runs a worker: the ingest, route and deliver stages, the HTTP endpoints and the alert "
        "watch. Settings come from SAMBAND_* variables (see docs/configuration.md).",
    )
    parser.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--stage",
        action="append",
        choices=["ingest", "route", "deliver"],
        help="run only this stage (repeatable; default: all three)",
    )
    parser.add_argument(
        "--processes",
        type=_process_count,
        metavar="N",
        help="worker processes on this host, each with its own partitions and web port (SAMBAND_WEB_PORT + i); "
        "default SAMBAND_WORKER_PROCESSES, else one per usable core, at most one per partition",
    )
    parser.set_defaults(handler=_worker)
