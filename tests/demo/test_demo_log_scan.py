"""Issue 8 acceptance: every log of a full demo run (the worker's, the feed source's, the demo's own
output) holds no identity number and no address of a fortrolig or strengt fortrolig person; and the
scan that shows it does catch a planted one of each."""

from __future__ import annotations

import json

import pytest

from agents.demo.log_scan import IDENTITY_NUMBER, PROTECTED, PROTECTED_ADDRESS, protected_street_names, scan_text


@pytest.fixture(scope="module")
def demo_logs(demo_run) -> dict[str, str]:
    """Every log of the run: each *.log file the demo wrote in its run directory, and its stdout and stderr."""
    result, run_dir = demo_run
    logs = {path.name: path.read_text(errors="replace") for path in sorted(run_dir.glob("*.log"))}
    assert {"worker.log", "feed-source.log"} <= set(logs), sorted(logs)
    assert all(logs[name].count("\n") > 10 for name in ("worker.log", "feed-source.log")), "a log is (nearly) empty"
    return {**logs, "demo stdout": result.stdout, "demo stderr": result.stderr}


@pytest.fixture(scope="module")
def protected_streets(demo_feed) -> frozenset[str]:
    streets = protected_street_names(demo_feed.documents, demo_feed.protection_of_event)
    assert streets, "the run had no protected person with an address"
    return streets


def test_no_log_of_a_demo_run_holds_an_identity_number_or_a_protected_address(demo_run, demo_logs, protected_streets):
    result, _ = demo_run
    assert "Leak check" in result.stdout, result.stdout[-2000:]  # the run got to its end
    findings = [f for name, text in demo_logs.items() for f in scan_text(name, text, protected_streets)]
    assert findings == []


def test_the_scan_catches_a_planted_identity_number_and_a_planted_protected_address(demo_logs, demo_feed, protected_streets):
    protected = [d for d in demo_feed.documents if demo_feed.protection_of_event[d.hendelsesdokument] in PROTECTED]
    number, street = protected[0].folkeregisteridentifikator, sorted(protected_streets)[0]
    lines = demo_logs["worker.log"].splitlines()
    planted = [json.dumps({"event": "moved", "note": f"person {number}"}),  # as the JSON renderer writes it
               json.dumps({"event": "moved", "error": f"new address {street} 12"})]  # non-ASCII letters escaped
    text = "\n".join(lines[:5] + planted[:1] + lines[5:] + planted[1:])
    findings = scan_text("worker.log", text, protected_streets)
    assert [(f.line, f.kind) for f in findings] == [(6, IDENTITY_NUMBER), (len(lines) + 2, PROTECTED_ADDRESS)]
