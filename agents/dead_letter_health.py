"""Dead letters of every stage, counted for health: how many each stage wrote in the last window,
against the operator's limits per stage and per reason, with the top reasons named.

    counts = await dead_letter_counts(bootstrap, app_id, window_s=3600)
    window = DeadLetterWindow(3600, recent=50)      # the dashboard's: refreshed with what is new
    await window.refresh(bootstrap, app_id)
    problems = over_limits(counts, parse_limits("source=1000,ingest=100,ingest:kommune.unknown=20"))

Only the dead letters' headers are read (connectors/dead_letters.py): never their sealed data.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from dataclasses import dataclass, field

from bus.reading import read_topic
from bus.topics import topic_names
from connectors.dead_letters import STAGES, DeadLetter


@dataclass
class StageCounts:
    stage: str
    total: int = 0
    reasons: Counter = field(default_factory=Counter)

    def top(self, n: int = 3) -> list[tuple[str, int]]:
        return self.reasons.most_common(n)


def parse_limits(text: str) -> dict[tuple[str, str | None], int]:
    """`stage=N` or `stage:reason=N`, comma separated -> {(stage, reason or None): N}; ValueError names the entry."""
    limits: dict[tuple[str, str | None], int] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, _, number = entry.partition("=")
        stage, _, reason = name.partition(":")
        if stage not in STAGES or not number.strip().isdigit():
            raise ValueError(f"not stage=N or stage:reason=N with a stage of {', '.join(STAGES)}: {entry!r}")
        limits[(stage, reason or None)] = int(number)
    return limits


async def dead_letter_counts(bootstrap: str, app_id: str, window_s: float) -> dict[str, StageCounts]:
    window = DeadLetterWindow(window_s, recent=0)
    await window.refresh(bootstrap, app_id)
    return window.counts()


class DeadLetterWindow:
    """The dead letters of the last `window_s`, kept up to date by reading only what is new since
    the previous refresh (the dashboard samples it every few seconds: it must not read the whole
    window each time). Counts are kept per minute, stage and reason, so the window moves a minute
    at a time; the newest `recent` are kept whole (id `<partition>:<offset>`, as `samband dlq`
    names them, stage, reason, subscription, event id and type, time)."""

    def __init__(self, window_s: float, recent: int = 50):
        self.window_s = window_s
        self.recent = recent
        self._minutes: dict[int, Counter] = {}  # minute since the epoch -> Counter of (stage, reason)
        self._newest: list[tuple[int, str, dict]] = []  # a heap of (timestamp ms, id, row)
        self._next_offset: dict[int, int] = {}  # partition -> the first offset not yet counted
        self._read_at: float | None = None

    async def refresh(self, bootstrap: str, app_id: str) -> None:
        now = time.time()
        # A little overlap with the previous read: the broker's clock and ours may differ.
        since = now - self.window_s if self._read_at is None else self._read_at - 5
        async for record in read_topic(bootstrap, topic_names(app_id).deadletter, since=since):
            if record.offset < self._next_offset.get(record.partition, 0):
                continue
            self._next_offset[record.partition] = record.offset + 1
            dead = DeadLetter.from_headers(record.headers)
            self._minutes.setdefault(record.timestamp // 60_000, Counter())[(dead.stage, dead.reason)] += 1
            if self.recent:
                dlq_id = f"{record.partition}:{record.offset}"
                row = {"id": dlq_id, "stage": dead.stage, "reason": dead.reason, "subscription": dead.subscription,
                       "event_id": dead.event_id, "event_type": dead.event_type, "time": dead.time}  # fmt: skip
                if len(self._newest) < self.recent:
                    heapq.heappush(self._newest, (record.timestamp, dlq_id, row))
                else:
                    heapq.heappushpop(self._newest, (record.timestamp, dlq_id, row))
        self._read_at = now
        oldest_ms = int((now - self.window_s) * 1000)
        for minute in [m for m in self._minutes if (m + 1) * 60_000 <= oldest_ms]:
            del self._minutes[minute]
        self._newest = [item for item in self._newest if item[0] >= oldest_ms]
        heapq.heapify(self._newest)

    def counts(self) -> dict[str, StageCounts]:
        counts = {stage: StageCounts(stage) for stage in STAGES}
        for per_reason in self._minutes.values():
            for (stage, reason), n in per_reason.items():
                counts[stage].total += n
                counts[stage].reasons[reason] += n
        return counts

    def newest(self) -> list[dict]:
        return [row for _, _, row in sorted(self._newest, key=lambda item: (item[0], item[1]), reverse=True)]


def over_limits(counts: dict[str, StageCounts], limits: dict[tuple[str, str | None], int]) -> list[str]:
    """One line per limit passed, naming the stage's top reasons."""
    problems = []
    for (stage, reason), limit in sorted(limits.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        found = counts[stage].reasons[reason] if reason else counts[stage].total
        if found > limit:
            what = f"{stage} dead letters of reason {reason}" if reason else f"{stage} dead letters"
            top = ", ".join(f"{r} {n}" for r, n in counts[stage].top())
            problems.append(f"{found} {what} in the window, above the limit of {limit} (top reasons: {top})")
    return problems
