"""`samband demo` end to end, as a user runs it: a subprocess against the session's broker (the run: conftest.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from agents.demo.systems import load_subscriptions

SYSTEMS = [s.id for s in load_subscriptions()]


def _summary_rows(output: str) -> dict[str, list[str]]:
    table = output[output.index("What each system received") : output.index("Event types received")]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if cells and cells[0] in SYSTEMS:
            rows[cells[0]] = cells
    return rows


def test_the_summary_has_a_row_with_counts_for_every_sample_system(demo_run):
    result, _ = demo_run
    rows = _summary_rows(result.stdout)
    assert sorted(rows) == sorted(SYSTEMS), result.stdout[-3000:]
    assert all(int(cells[2].replace(",", "")) > 0 for cells in rows.values()), "a system was entitled to nothing"


def test_every_webhook_system_got_everything_it_was_entitled_to_the_misbehaving_one_after_retries(demo_run):
    result, _ = demo_run
    rows = _summary_rows(result.stdout)
    for system, (_, via, entitled, delivered, dead, pending, _retries, _refused, _leaks) in rows.items():
        if via == "webhook":
            assert (delivered, dead, pending) == (entitled, "0", "0"), f"{system}: {rows[system]}"
    trondheim = rows["trondheim-pleie-og-omsorg"]
    assert int(trondheim[6]) > 0 and int(trondheim[7]) > 0, "the outage caused no retries"


def test_the_privacy_scan_of_the_runs_topics_and_logs_finds_nothing_and_no_person_is_printed(demo_run):
    result, run_dir = demo_run
    assert "Leak check: 0 findings." in result.stdout, result.stdout[-3000:]
    assert all(cells[-1] == "0" for cells in _summary_rows(result.stdout).values())
    logs = {path.name: path.read_text(errors="replace") for path in run_dir.glob("*.log")}
    assert all(logs.get(name, "").count("\n") > 10 for name in ("worker.log", "feed-source.log")), sorted(logs)
    assert not re.search(r"\b\d{11}\b", result.stdout + result.stderr), "an identity number was printed"


def test_no_process_the_demo_started_is_left_running(demo_run):
    result, run_dir = demo_run
    pids = [int(p) for p in re.findall(r"pid (\d+)", result.stdout)]
    assert len(pids) == 2, result.stdout[:2000]  # the worker and the feed source
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or run_dir.name not in _environ_of(pid)
    left = subprocess.run(["pgrep", "-f", run_dir.name], capture_output=True, text=True)
    assert left.stdout == ""


def _environ_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_the_demo_exits_0_with_every_entitled_event_delivered(demo_run):
    result, _ = demo_run
    assert "every event a system was entitled to was delivered" in result.stdout, result.stdout[-2000:]
    assert result.returncode == 0
