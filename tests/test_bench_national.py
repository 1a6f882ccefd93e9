"""bench/bench_national.py works end to end at a small scale (issue 17: CI runs the national bench
at a small `--scale`): extract, reform day and backfill through a real worker, feed source and
receivers, every entitled subscriber served, a report and a lag plot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(600)


def test_the_national_bench_runs_at_a_small_scale(kafka_bootstrap, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "TMPDIR": str(tmp_path)}
    env.pop("SAMBAND_KAFKA_BOOTSTRAP_SERVERS", None)
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_national.py"), "--scale", "0.001", "--processes", "1",
         "--live-seconds", "30", "--timeout", "400", "--out", str(out)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=560,
    )  # fmt: skip
    report = run.stdout
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    # Each phase finished only when every entitled subscriber had every event; the report says so.
    reform = re.search(r"Reform day: ([\d,]+) events routed and delivered to every entitled subscriber", report)
    assert reform and int(reform[1].replace(",", "")) > 0, report
    expected = re.search(r"([\d,]+) deliveries expected", report)
    webhooks = re.search(r"Webhooks: ([\d,]+) events in [\d,]+ requests \(([\d,]+) single\), ([\d,]+) duplicates, (\d+) bad", report)  # fmt: skip
    assert expected and webhooks, report
    assert int(webhooks[2].replace(",", "")) > 0  # single requests and batches both
    assert webhooks[4] == "0"  # every request signed as Standard Webhooks says
    for stage in (
        "| extract | ingest",
        "| reform day | feed source",
        "| reform day | route",
        "| baseline | raw aiokafka",
    ):
        assert stage in report
    assert re.search(r"Backfill: [\d,]+ events .* ([\d,]+) delivered", report)
    assert re.search(r"latency from the feed to the subscriber p50 [\d,]+ ms, p99 [\d,]+ ms", report)
    assert "Dead letters: 0." in report
    assert re.search(r"\| worker \| [\d,]+ \|", report)  # peak RSS of the one worker process
    plot = out / "national-lag-scale-0.001.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
