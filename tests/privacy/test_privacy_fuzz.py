"""Acceptance (issue 13): a fuzzed run with protected persons and replays leaves 0 findings.

A small run in the suite; `make privacy-fuzz` runs it large. SAMBAND_FUZZ_SEED and
SAMBAND_FUZZ_PERSONS choose the run (the seed is printed: the same seed gives the same
population, subscriptions and order of events). The run: tests/privacy/privacy_fuzz.py.
"""

from __future__ import annotations

import os
import random

from tests.privacy.privacy_fuzz import fuzz_run


async def test_a_random_run_with_protected_persons_and_replays_leaves_no_finding(kafka_bootstrap, tmp_path):
    seed = int(os.environ.get("SAMBAND_FUZZ_SEED") or random.randrange(2**32))
    persons = int(os.environ.get("SAMBAND_FUZZ_PERSONS", "6"))

    outcome = await fuzz_run(kafka_bootstrap, tmp_path, seed, persons)

    print(
        f"privacy fuzz: seed {seed}: {outcome.events} events of {outcome.persons} persons, "
        f"{outcome.requests} requests to the receivers"
    )
    rerun = f"(rerun: SAMBAND_FUZZ_SEED={seed} SAMBAND_FUZZ_PERSONS={persons})"
    report = "\n".join(
        [
            f"receivers got what the rule forbids {rerun}:",
            *outcome.findings,
            f"samband privacy scan exit {outcome.scan_code}:",
            outcome.scan_output,
        ]
    )
    assert (outcome.findings, outcome.scan_code) == ([], 0), report
