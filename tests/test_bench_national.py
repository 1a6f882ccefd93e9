"""bench/bench_national.py works end to end at a small scale (issue 17: CI runs the national bench
at a small `--scale`): extract, reform day and backfill through a real worker, feed source and
receivers, every webhook subscription served exactly what it is entitled to, a report and a lag plot."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(600)


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_the_national_bench_runs_at_a_small_scale(kafka_bootstrap, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "TMPDIR": str(tmp_path)}
    env.pop("SAMBAND_KAFKA_BOOTSTRAP_SERVERS", None)
    # A session of its own: a run past its time is stopped with everything it started.
    bench = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bench_national.py"), "--scale", "0.001", "--processes", "1",
         "--live-seconds", "30", "--reform-timeout", "240", "--timeout", "180", "--out", str(out)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        report, errors = bench.communicate(timeout=540)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()
    assert bench.returncode == 0, report[-3000:] + errors[-5000:]

    # The reform day finished: every entitled subscriber had every event, counted exactly.
    reform = re.search(r"Reform day: ([\d,]+) events routed and delivered to every entitled subscriber", report)
    assert reform and _number(reform[1]) > 0, report
    webhooks = re.search(
        r"Webhooks: ([\d,]+) events in ([\d,]+) requests \(([\d,]+) single\), ([\d,]+) duplicates, (\d+) bad "
        r"signatures, (\d+) subscriptions with other than their entitled count.*Kafka: ([\d,]+) records and "
        r"files: ([\d,]+) lines, of ([\d,]+) events",
        report,
    )
    assert webhooks, report
    events, _requests, single, duplicates, bad, wrong, kafka, lines, reform_events = (
        _number(webhooks[i]) for i in range(1, 10)
    )
    assert wrong == 0 and bad == 0 and duplicates == 0
    assert kafka == lines == reform_events == _number(reform[1])
    assert 0 < single < events  # single requests, and the others in batch mode
    assert re.search(r"Backfill: [\d,]+ events .* ([\d,]+) delivered", report)
    assert re.search(r"latency from the feed to the subscriber p50 [\d,]+ ms, p99 [\d,]+ ms", report)
    # the first stretch split at the source's write: the ingest topic's records were matched to the live events
    assert re.search(r"  feed -> source's write: p50 [\d,]+ ms, p99 [\d,]+ ms \([\d,]+ deliveries\)", report), report
    assert re.search(
        r"worker process 0's event-loop lag through the backfill: p99 (<=|>) [\d.]+ s; of [\d,]+ wake-ups", report
    ), report
    # None but the register's made-up event types (synthetic's unusual_type_share), refused by the source.
    assert re.search(r"Dead letters: (0\.|[\d,]+ \(event\.unknown_type: [\d,]+\)\.)", report), report
    assert re.search(r"\| worker \| [\d,]+ \|", report)  # peak RSS of the one worker process
    plot = out / "national-lag-scale-0.001.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
