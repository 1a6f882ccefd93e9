"""`samband simulate folkeregister | stats`: a synthetic Norway and a local Folkeregister feed."""

from __future__ import annotations

import argparse
import asyncio

from agents.logging import configure_logging
from synthetic import Reform, Simulation, SyntheticConfig
from synthetic.folkeregister_simulator import DEFAULT_TOKEN, Faults, run_simulator
from synthetic.stats import render_stats


def _config(args: argparse.Namespace) -> SyntheticConfig:
    reform = Reform(fylke=args.reform_fylke) if getattr(args, "reform_fylke", None) else None
    return SyntheticConfig(
        persons=args.population,
        seed=args.seed,
        protection_scale=getattr(args, "protection_scale", 1.0),
        reform=reform,
    )


def _folkeregister(args: argparse.Namespace) -> int:
    configure_logging()
    simulation = Simulation(_config(args))
    faults = Faults(
        throttle_share=args.fault_429,
        error_share=args.fault_500,
        slow_share=1.0 if args.slow_ms else 0.0,
        slow_ms=args.slow_ms,
        seed=args.seed,
    )

    async def serve() -> None:
        async with run_simulator(
            simulation.events(years=args.years),
            host=args.host,
            port=args.port,
            token=args.token,
            faults=faults,
            live=simulation.events(years=None),
            rate=args.rate,
            bulk=args.bulk,
        ) as simulator:
            print(f"Folkeregister feed simulator at {simulator.feed_url}?seq=1 ({simulator.store.latest:,} events)")
            print("  clients send Authorization: Bearer <the --token value>")
            await asyncio.Event().wait()

    asyncio.run(serve())
    return 0


def _stats(args: argparse.Namespace) -> int:
    print(render_stats(Simulation(_config(args)), years=args.years))
    return 0


def _population_options(parser: argparse.ArgumentParser, default_population: int) -> None:
    parser.add_argument("--population", type=int, default=default_population, help="persons at the start")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same population and feed")
    parser.add_argument("--years", type=int, default=1, help="years of life events to simulate")


def register(subparsers: argparse._SubParsersAction) -> None:
    simulate = subparsers.add_parser("simulate", help="synthetic population and a local Folkeregister feed")
    actions = simulate.add_subparsers(dest="action", metavar="ACTION", required=True)

    feed = actions.add_parser(
        "folkeregister",
        help="serve a synthetic Folkeregister event feed over HTTP",
        description="Generates a synthetic population, simulates --years of life events into the feed, "
        "then serves it (and, with --rate, keeps appending events). Identity numbers are synthetic.",
    )
    _population_options(feed, default_population=10_000)
    feed.add_argument("--host", default="127.0.0.1")
    feed.add_argument("--port", type=int, default=8089)
    feed.add_argument("--token", default=DEFAULT_TOKEN, help="the static bearer token clients must send")
    feed.add_argument("--rate", type=float, default=0.0, help="events per second appended while running")
    feed.add_argument("--fault-429", type=float, default=0.0, help="share of requests answered 429 + Retry-After")
    feed.add_argument("--fault-500", type=float, default=0.0, help="share of requests answered 500")
    feed.add_argument(
        "--slow-ms", type=int, default=0, help="latency added to every feed page and bulk documents request"
    )
    feed.add_argument(
        "--no-bulk",
        dest="bulk",
        action="store_false",
        help="no bulk documents endpoint (POST answers 405): one GET per document, as the real register",
    )
    feed.add_argument("--protection-scale", type=float, default=1.0, help="multiply address-protection shares")
    feed.add_argument("--reform-fylke", help="renumber this fylke's kommuner on 1 Jan of the second year")
    feed.set_defaults(handler=_folkeregister)

    stats = actions.add_parser("stats", help="shares per fylke, age pyramid and yearly event rates")
    _population_options(stats, default_population=1_000_000)
    stats.set_defaults(handler=_stats)
