"""`samband status`: is the bus healthy? Broker, topics, consumer lag, subscriptions; exit 1 when anything is not.

    samband status [--json] [--max-lag N] [--interval S]

The report is a list of sections. A section is produced by one async function
`(kafka, options) -> Section`; `SECTIONS` lists them in display order. A section's `problems`
make the whole status unhealthy (exit 1). When the broker cannot be reached, the report holds
the broker section alone, unhealthy.

The dead-letters section (agents/dead_letter_health.py) counts every stage's dead letters in the
last SAMBAND_DEAD_LETTER_WINDOW_S and names the top reasons; more than SAMBAND_DEAD_LETTER_LIMITS
allows (per stage, or per stage and reason) is unhealthy.

The backfills section gives each backfill asked for (`samband subscriptions backfill`): since
when, how many events the routers have read again of how many, and how many partitions are done.

The subscriptions section (agents/delivery_health.py) gives each subscription's state
(active, paused, outside_window, failing, suspended, disabled), last successful delivery, retry backlog and dead-letter
count, read from Kafka; a failing, suspended or disabled subscription makes the status unhealthy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
)

from agents.commands.topics_and_lag import (
    add_connection_arguments,
    bus_groups,
    format_lag,
    format_topics,
    inspector,
    lag_problems,
    lag_report,
    topic_report,
)
from agents.config import get_settings
from agents.delivery_health import subscription_health
from agents.routing.backfill import summaries
from agents.stage_runtime import STAGES, stage_group
from bus.inspector import BrokerUnreachable, GroupsUndescribed, KafkaInspector
from bus.topics import topic_names


@dataclass(frozen=True)
class StatusOptions:
    app_id: str
    max_lag: int
    interval: float


@dataclass
class Section:
    name: str
    data: Any  # JSON-able; what `--json` prints under the section's name
    text: str  # what an operator reads
    problems: list[str] = field(default_factory=list)
    shown: bool = True  # False: it could not be read (its data is None); the report is incomplete


SectionProvider = Callable[[KafkaInspector, StatusOptions], Awaitable[Section]]


@dataclass
class StatusReport:
    sections: list[Section]

    @property
    def problems(self) -> list[str]:
        return [problem for section in self.sections for problem in section.problems]

    @property
    def healthy(self) -> bool:
        return not self.problems

    @property
    def incomplete(self) -> list[str]:
        """The sections that could not be read: health is judged on the others."""
        return [section.name for section in self.sections if not section.shown]

    def as_json(self) -> dict:
        return {
            "healthy": self.healthy,
            "problems": self.problems,
            "incomplete": self.incomplete,
            **{s.name: s.data for s in self.sections},
        }

    def as_text(self) -> str:
        lines = [f"samband status: {'HEALTHY' if self.healthy else 'UNHEALTHY'}"]
        for section in self.sections:
            lines += ["", f"== {section.name} ==", section.text]
        lines += [f"UNHEALTHY: {problem}" for problem in self.problems]
        if self.incomplete:
            lines.append(f"INCOMPLETE: not shown, so not judged: {', '.join(self.incomplete)}")
        return "\n".join(lines)


async def broker_section(kafka: KafkaInspector, options: StatusOptions) -> Section:
    brokers = await kafka.brokers()
    return Section(
        "broker",
        {"reachable": True, "bootstrap": kafka.bootstrap, "brokers": brokers},
        f"reachable: {', '.join(brokers)}",
    )


async def topics_section(kafka: KafkaInspector, options: StatusOptions) -> Section:
    rows = await topic_report(kafka, f"{options.app_id}-", options.interval)
    return Section("topics", [asdict(row) for row in rows], format_topics(rows))


async def lag_section(kafka: KafkaInspector, options: StatusOptions) -> Section:
    rows = await lag_report(kafka, await bus_groups(kafka, options.app_id))
    return Section("lag", [asdict(row) for row in rows], format_lag(rows), lag_problems(rows, options.max_lag))


def format_subscriptions(rows: list) -> str:
    if not rows:
        return "no subscriptions"
    lines = [
        f"{'SUBSCRIPTION':<32} {'STATE':<14} {'LAST DELIVERED':<30} {'RETRY BACKLOG':>13} {'DEAD LETTERS':>12}  REASON"
    ]
    for row in rows:
        dead = f"{row.dead_letters_unresolved}/{row.dead_letters}"
        why = row.reason or ""
        if row.state == "outside_window":
            why = f"{row.pending} held until {row.window_opens or 'a window opens'}"
        lines.append(
            f"{row.id:<32} {row.state:<14} {row.last_delivered or '-':<30} {row.retry_backlog:>13} {dead:>12}  {why}"
        )
    return "\n".join(lines)


async def subscriptions_section(kafka: KafkaInspector, options: StatusOptions) -> Section:
    rows = await subscription_health(kafka.bootstrap, options.app_id)
    problems = [
        f"subscription {row.id} is {row.state} ({row.reason})"
        for row in rows
        if row.state in ("failing", "suspended", "disabled")
    ]
    return Section("subscriptions", [asdict(row) for row in rows], format_subscriptions(rows), problems)


async def dead_letters_section(kafka: KafkaInspector, options: StatusOptions) -> Section:
    """Dead letters of every stage in the last window, against SAMBAND_DEAD_LETTER_LIMITS."""
    from agents.dead_letter_health import dead_letter_counts, over_limits, parse_limits

    settings = get_settings()
    counts = await dead_letter_counts(kafka.bootstrap, options.app_id, settings.dead_letter_window_s)
    problems = over_limits(counts, parse_limits(settings.dead_letter_limits))
    window = f"last {settings.dead_letter_window_s / 3600:g} h"
    lines = [f"{'STAGE':<8} {'DEAD LETTERS (' + window + ')':>26}  TOP REASONS"]
    for stage, found in counts.items():
        lines.append(f"{stage:<8} {found.total:>26}  {', '.join(f'{r} {n}' for r, n in found.top()) or '-'}")
    data = {stage: {"total": c.total, "reasons": dict(c.reasons)} for stage, c in counts.items()}
    return Section("dead_letters", {"window_s": settings.dead_letter_window_s, **data}, "\n".join(lines), problems)


async def backfills_section(kafka: KafkaInspector, options: StatusOptions) -> Section:
    """The backfills asked for and how far the routers have come (agents/routing/backfill.py)."""
    names = topic_names(options.app_id)
    found = await summaries(kafka.bootstrap, names)
    text = "\n".join(s.line() for s in found) or "none asked for"
    return Section("backfills", [s.as_json() for s in found], text)


async def workers_section(kafka: KafkaInspector, options: StatusOptions) -> Section:
    """Each worker process in the stages' groups (`samband worker --processes N` runs N per host),
    its name when it has one (SAMBAND_WORKER_NAME), and the partitions of its stages' topics it
    holds: the same numbers in every stage, while the groups are settled (bus/assignor.py)."""
    groups = {stage_group(options.app_id, stage): stage for stage in STAGES}
    processes: dict[tuple[str, str], dict] = {}
    # Only the groups the broker lists: a new cluster has no coordinator for a group nobody joined yet.
    listed = set(await kafka.groups(f"{options.app_id}-"))
    for member in await kafka.group_members([group for group in groups if group in listed]):
        row = processes.setdefault(
            (member.client_id, member.host),
            {"process": member.client_id, "host": member.host, "name": member.instance},
        )
        held = {p for numbers in member.partitions.values() for p in numbers}
        row[groups[member.group]] = sorted(held | set(row.get(groups[member.group], [])))
    rows = [processes[name] for name in sorted(processes)]
    width = max([12, *(len(row["name"] or "") for row in rows)])  # a pod's name is 30 characters or so
    lines = [f"{'PROCESS':<40} {'HOST':<16} {'NAME':<{width}} " + " ".join(f"{stage.upper():<12}" for stage in STAGES)]
    for row in rows:
        held = " ".join(f"{_ranges(row[stage]) if stage in row else '-':<12}" for stage in STAGES)
        lines.append(f"{row['process']:<40} {row['host']:<16} {row['name'] or '-':<{width}} {held}")
    return Section("workers", rows, "\n".join(lines) if rows else "no worker process is in the stages' groups")


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    parts: list[str] = []
    for number in numbers:
        if parts and number == int(parts[-1].split("-")[-1]) + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{number}"
        else:
            parts.append(str(number))
    return ",".join(parts) or "none"


# Display order.
SECTIONS: list[SectionProvider] = [
    broker_section,
    topics_section,
    lag_section,
    workers_section,
    subscriptions_section,
    backfills_section,
    dead_letters_section,
]


async def collect_status(
    kafka_factory: Callable[[], KafkaInspector], options: StatusOptions, sections=SECTIONS
) -> StatusReport:
    kafka = kafka_factory()
    try:
        async with kafka:
            return StatusReport([await _shown(section, kafka, options) for section in sections])
    except BrokerUnreachable as exc:
        unreachable = {"reachable": False, "bootstrap": kafka.bootstrap, "brokers": []}
        return StatusReport([Section("broker", unreachable, "unreachable", [str(exc)])])


async def _shown(section: SectionProvider, kafka: KafkaInspector, options: StatusOptions) -> Section:
    """The section, or what it could not read: a principal without the right to read a topic (the
    read-only operator, for one, may not read the subscriptions) still gets every other section."""
    try:
        return await section(kafka, options)
    except (
        TopicAuthorizationFailedError,
        GroupAuthorizationFailedError,
        ClusterAuthorizationFailedError,
        GroupsUndescribed,
    ) as exc:
        name = section.__name__.removesuffix("_section")
        why = f"{type(exc).__name__}: {exc}" if isinstance(exc, GroupsUndescribed) else type(exc).__name__
        return Section(name, None, f"not shown: it could not be read with this principal ({why})", shown=False)


def _status(args: argparse.Namespace) -> int:
    settings = get_settings()
    max_lag = args.max_lag if args.max_lag is not None else settings.ready_max_lag
    options = StatusOptions(settings.app_id, max_lag, args.interval)
    report = asyncio.run(collect_status(lambda: inspector(args), options))
    print(json.dumps(report.as_json(), indent=2) if args.json else report.as_text())
    return 0 if report.healthy else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    status = subparsers.add_parser(
        "status",
        help="health of the bus: broker, topics, consumer lag, worker processes, subscriptions, dead letters "
        "(exit 1 when unhealthy)",
        description="Broker health, the bus's topics with message rates, consumer-group lag, each worker process "
        "and the partitions it holds, and each "
        "subscription's delivery state, and the dead letters of every stage. Exit 1 when the broker cannot be "
        "reached, a lag is above --max-lag, a subscription is failing, suspended or disabled, or a stage wrote "
        "more dead letters than SAMBAND_DEAD_LETTER_LIMITS allows. DEAD LETTERS is unresolved/total.",
    )
    status.add_argument("--max-lag", type=int, help="lag above this is unhealthy (default: SAMBAND_READY_MAX_LAG)")
    status.add_argument("--interval", type=float, default=1.0, help="seconds between the two rate samples; 0: no rates")
    add_connection_arguments(status)
    status.set_defaults(handler=_status)
