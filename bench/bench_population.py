"""Synthetic population benchmark: generation rate and peak memory.

Each size runs in its own process, so peak RSS is that size's alone. A run builds the
population and simulates one year of life events (consumed, not stored), as a feed
simulator or an ingest benchmark would.

    .venv/bin/python bench/bench_population.py                        # 1 M persons
    .venv/bin/python bench/bench_population.py --population 5500000   # all of Norway (target: < 5 min, < 2 GB)
    .venv/bin/python bench/bench_population.py --population 1000000 5500000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(persons: int, seed: int) -> dict:
    from synthetic import Simulation, SyntheticConfig

    started = time.perf_counter()
    simulation = Simulation(SyntheticConfig(persons=persons, seed=seed))
    built = time.perf_counter()
    events = sum(1 for _ in simulation.events(years=1))
    finished = time.perf_counter()
    return {
        "persons": persons,
        "build_s": built - started,
        "year_s": finished - built,
        "events": events,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--population", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)  # one size, JSON out
    args = parser.parse_args()
    if args.single:
        print(json.dumps(measure(args.population[0], args.seed)))
        return 0

    header = f"{'persons':>10} {'build s':>8} {'persons/s':>11} {'1 year s':>9} {'events':>10} {'events/s':>9} {'total s':>8} {'peak RSS':>9}"
    print(header)
    for persons in args.population:
        out = subprocess.run(
            [sys.executable, __file__, "--single", "--seed", str(args.seed), "--population", str(persons)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out)
        total = r["build_s"] + r["year_s"]
        print(
            f"{r['persons']:>10,} {r['build_s']:>8.1f} {r['persons'] / r['build_s']:>11,.0f} {r['year_s']:>9.1f} "
            f"{r['events']:>10,} {r['events'] / r['year_s']:>9,.0f} {total:>8.1f} {r['peak_rss_mb']:>6,.0f} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
