"""The demo's terminal: a live view while it runs and the summary at the end (rich).

Only system names, counts, event types and rates are shown: never a person.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text

from agents.demo.checks import Gap
from agents.demo.monitor import BusFlow
from agents.demo.receivers import Recording


@dataclass(frozen=True)
class SystemRow:
    """One sample system as the demo shows it."""

    id: str
    name: str
    kind: str  # webhook | kafka | files (the delivery kind)
    note: str  # e.g. "down for 15 s, then recovers"


class RateMeter:
    """Per-second rates of growing counters, over the last few seconds."""

    def __init__(self, window: float = 3.0):
        self.window = window
        self.samples: deque[tuple[float, dict[str, int]]] = deque()

    def sample(self, counters: dict[str, int], now: float | None = None) -> dict[str, float]:
        now = time.monotonic() if now is None else now
        self.samples.append((now, counters))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()
        then, old = self.samples[0]
        span = now - then
        return {k: (v - old.get(k, 0)) / span if span > 0 else 0.0 for k, v in counters.items()}


def live_view(
    elapsed: float,
    duration: float,
    published: int,
    total: int,
    flow: BusFlow,
    systems: list[SystemRow],
    recordings: dict[str, Recording],
    rates: dict[str, float],
) -> Group:
    head = Text.assemble(
        ("Samband demo ", "bold"),
        f"{elapsed:5.0f} / {duration:.0f} s   ",
        ("Folkeregisteret feed ", "bold"),
        f"{published:,} / {total:,} events of a compressed year   ",
        ("in ", "bold"),
        f"{flow.ingested:,} ({rates.get('in', 0):,.0f}/s)   ",
        ("validated ", "bold"),
        f"{flow.validated:,}   ",
        ("dead letters ", "bold"),
        _stages(flow),
    )
    table = Table(expand=True)
    for column in ("system", "via", "routed", "delivered", "/s", "retries", "dead", "pending", ""):
        table.add_column(column, justify="left" if column in ("system", "via", "") else "right")
    for system in systems:
        sys_flow, got = flow.systems[system.id], recordings[system.id]
        delivered = len(sys_flow.routed & got.event_ids)
        table.add_row(
            system.id,
            system.kind,
            f"{len(sys_flow.routed):,}",
            f"{delivered:,}",
            f"{rates.get(system.id, 0):,.0f}",
            f"{sys_flow.failed_attempts:,}",
            f"{len(sys_flow.dead_lettered):,}",
            f"{len(sys_flow.routed) - delivered - len(sys_flow.dead_lettered - got.event_ids):,}",
            system.note,
        )
    return Group(head, table)


def _stages(flow: BusFlow) -> str:
    if not flow.dead_letters:
        return "0"
    return ", ".join(f"{stage} {count:,}" for stage, count in sorted(flow.dead_letters.items()))


def summary_table(
    systems: list[SystemRow],
    gaps: dict[str, Gap],
    flow: BusFlow,
    recordings: dict[str, Recording],
    leaks_per_system: dict[str, int],
) -> Group:
    """Per system: entitled (routed to it), delivered, dead, pending, retries, 500s answered, leaks; then what it got."""
    table = Table(title="What each system received", expand=False)
    for column in ("system", "via", "entitled", "delivered", "dead", "pending", "retries", "500s", "leaks"):
        table.add_column(column, justify="left" if column in ("system", "via") else "right")
    types = Table(title="Event types received", expand=False)
    types.add_column("system")
    types.add_column("event types (count)")
    for system in systems:
        gap, got = gaps[system.id], recordings[system.id]
        table.add_row(
            system.id,
            system.kind,
            f"{gap.routed:,}",
            f"{gap.delivered:,}",
            f"{gap.dead_lettered:,}",
            f"{gap.pending:,}",
            f"{flow.systems[system.id].failed_attempts:,}",
            f"{got.counts.refused:,}",
            str(leaks_per_system.get(system.id, 0)),
        )
        counted = Counter(event.event_type for event in got.events)
        types.add_row(system.id, ", ".join(f"{t} {n}" for t, n in counted.most_common()) or "-")
    return Group(table, types)
