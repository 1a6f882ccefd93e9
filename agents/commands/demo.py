"""`samband demo`: a synthetic Norway's year of life events through the bus to eight sample systems.

The work is in agents/demo/ (see agents/demo/run.py for the order of things).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from agents.demo.run import Options, run_demo

    if args.duration <= 0 or args.population < 100:
        print("samband: --duration must be > 0 and --population at least 100", flush=True)
        return 2
    pictures = Path(args.dashboard_pictures) if args.dashboard_pictures else None
    return run_demo(Options(args.duration, args.population, args.seed, args.keep_running, pictures))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the demo: a synthetic Norway's life events through the bus to eight sample systems",
        description="Starts the broker (or reuses a running one), the bus worker, the Folkeregister feed simulator "
        "and feed source, and eight local receivers; shows the flow live, then checks that nothing leaked and "
        "everything was delivered. Exit 0 when both checks pass. Stops everything it started.",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds the events flow (default 60)")
    parser.add_argument("--population", type=int, default=50_000, help="synthetic persons (default 50,000)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same population and events")
    parser.add_argument("--keep-running", action="store_true", help="keep running after --duration until Ctrl-C")
    parser.add_argument(
        "--dashboard-pictures",
        metavar="DIR",
        help="at the end of the flow, save the dashboard's pictures (wide and narrow) into DIR "
        "(needs Playwright and Debian's chromium; `make dashboard-pictures` refreshes docs/)",
    )
    parser.set_defaults(handler=_demo)
