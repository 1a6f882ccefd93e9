"""Dead letters of every stage, counted for health: how many each stage wrote in the last window,
against the operator's limits per stage and per reason, with the top reasons named.

    counts = await dead_letter_counts(bootstrap, app_id, window_s=3600)
    counts, newest = await dead_letter_summary(bootstrap, app_id, window_s=3600, recent=50)   # for the dashboard
    problems = over_limits(counts, parse_limits("source=1000,ingest=100,ingest:kommune.unknown=20"))

Only the dead letters' headers are read (connectors/dead_letters.py): never their sealed data.
"""

from __future__ import annotations

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
    return (await dead_letter_summary(bootstrap, app_id, window_s, recent=0))[0]


async def dead_letter_summary(
    bootstrap: str, app_id: str, window_s: float, recent: int = 50
) -> tuple[dict[str, StageCounts], list[dict]]:
    """The counts of the window, and its `recent` newest dead letters: id (`<partition>:<offset>`,
    as `samband dlq` names them), stage, reason, subscription, event id and type, time."""
    counts = {stage: StageCounts(stage) for stage in STAGES}
    newest: list[dict] = []
    async for record in read_topic(bootstrap, topic_names(app_id).deadletter, since=time.time() - window_s):
        dead = DeadLetter.from_headers(record.headers)
        counts[dead.stage].total += 1
        counts[dead.stage].reasons[dead.reason] += 1
        if recent:
            newest.append(
                {
                    "id": f"{record.partition}:{record.offset}",
                    "stage": dead.stage,
                    "reason": dead.reason,
                    "subscription": dead.subscription,
                    "event_id": dead.event_id,
                    "event_type": dead.event_type,
                    "time": dead.time,
                }
            )
    newest.sort(key=lambda letter: letter["time"], reverse=True)
    return counts, newest[:recent]


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
