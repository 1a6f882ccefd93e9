"""`samband topics` and `samband lag`: what is in the bus's topics, and how far behind its consumers are.

    samband topics [--all | --prefix P | --table] [--interval S] [--json]
    samband lag [--group G ...] [--max-lag N] [--json]

By default both look at the bus's own topics and consumer groups: names that are the app id
(SAMBAND_APP_ID) or start with `<app id>-`. Exit codes: 0 fine, 1 a lag above `--max-lag`,
2 the broker could not be reached (the message says where).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass

from agents.config import bootstrap_servers, get_settings
from agents.stage_runtime import stage_input
from bus.inspector import BrokerUnreachable, KafkaInspector, PartitionLag
from bus.topics import TABLE

EXIT_UNHEALTHY = 1
EXIT_UNREACHABLE = 2


@dataclass(frozen=True)
class TopicRow:
    name: str
    partitions: int
    messages: int  # end minus start offsets: what the topic holds now
    rate_per_second: float | None  # records appended per second over the sampling interval


@dataclass(frozen=True)
class GroupTopicLag:
    group: str
    topic: str
    lag: int
    partitions: list[dict]  # {"partition", "committed", "end", "lag"}


async def topic_report(kafka: KafkaInspector, prefix: str, interval: float) -> list[TopicRow]:
    """Topics under `prefix` with message counts; with `interval` > 0, append rates from two samples."""
    partitions = await kafka.topic_partitions(prefix)
    first = await kafka.offsets(partitions)
    second = first
    if interval > 0 and partitions:
        await asyncio.sleep(interval)  # the sampling interval the operator asked for
        second = await kafka.offsets(partitions)
    by_topic: dict[str, list] = defaultdict(list)
    for before, after in zip(first, second, strict=False):
        by_topic[after.topic].append((before, after))
    return [
        TopicRow(
            name=topic,
            partitions=len(pairs),
            messages=sum(after.messages for _, after in pairs),
            rate_per_second=round(sum(after.end - before.end for before, after in pairs) / interval, 3)
            if interval > 0
            else None,
        )
        for topic, pairs in sorted(by_topic.items())
    ]


async def lag_report(kafka: KafkaInspector, groups: list[str]) -> list[GroupTopicLag]:
    """Lag per group and topic, over the partitions each group has committed on and, for a
    stage's group, every partition of the topic it reads: one it has never committed on counts
    from the partition's start, as the stage will read it."""
    rows: list[GroupTopicLag] = []
    for group in groups:
        inputs = []
        if (source := stage_input(group)) is not None:
            # (topic_partitions matches names by prefix: only the source's own)
            inputs = [tp for tp in await kafka.topic_partitions(source) if tp.topic == source]
        by_topic: dict[str, list[PartitionLag]] = defaultdict(list)
        for partition in await kafka.group_lag(group, also=inputs):
            by_topic[partition.topic].append(partition)
        for topic, partitions in sorted(by_topic.items()):
            rows.append(
                GroupTopicLag(
                    group,
                    topic,
                    sum(p.lag for p in partitions),
                    [
                        {"partition": p.partition, "committed": p.committed, "end": p.end, "lag": p.lag}
                        for p in partitions
                    ],
                )
            )
    return rows


async def bus_groups(kafka: KafkaInspector, app_id: str) -> list[str]:
    return [g for g in await kafka.groups(app_id) if g == app_id or g.startswith(f"{app_id}-")]


def lag_problems(rows: list[GroupTopicLag], max_lag: int | None) -> list[str]:
    if max_lag is None:
        return []
    return [f"group {row.group} lags {row.lag} on {row.topic} (max {max_lag})" for row in rows if row.lag > max_lag]


def format_topics(rows: list[TopicRow]) -> str:
    lines = [f"{'TOPIC':<48} {'PARTITIONS':>10} {'MESSAGES':>12} {'RATE/S':>10}"]
    for row in rows:
        rate = "-" if row.rate_per_second is None else f"{row.rate_per_second:.1f}"
        lines.append(f"{row.name:<48} {row.partitions:>10} {row.messages:>12} {rate:>10}")
    return "\n".join(lines)


def format_lag(rows: list[GroupTopicLag]) -> str:
    lines = [f"{'GROUP':<32} {'TOPIC':<48} {'LAG':>10}"]
    lines += [f"{row.group:<32} {row.topic:<48} {row.lag:>10}" for row in rows]
    return "\n".join(lines)


def inspector(args: argparse.Namespace) -> KafkaInspector:
    return KafkaInspector(bootstrap_servers(get_settings()), timeout=args.timeout)


def table_rows(app_id: str) -> list[dict]:
    """The topic table (bus/topics.py) for `app_id`: what the bus creates, broker or not."""
    return [
        {
            "name": t.name(app_id),
            "partitions": t.partition_count(),
            "cleanup": t.cleanup,
            "retention": t.retention,
            "key": t.key,
            "value": t.value,
            "written_by": t.writer,
        }
        for t in TABLE
    ]


def format_table(rows: list[dict]) -> str:
    lines = [f"{'TOPIC':<40} {'PARTITIONS':>10}  {'CLEANUP':<15} {'WRITTEN BY':<30} RETENTION"]
    lines += [
        f"{r['name']:<40} {r['partitions']:>10}  {r['cleanup']:<15} {r['written_by']:<30} {r['retention']}"
        for r in rows
    ]
    return "\n".join(lines)


def _topics(args: argparse.Namespace) -> int:
    if args.table:
        rows = table_rows(get_settings().app_id)
        print(json.dumps({"topics": rows}, indent=2) if args.json else format_table(rows))
        return 0
    prefix = "" if args.all else (args.prefix if args.prefix is not None else f"{get_settings().app_id}-")

    async def run() -> list[TopicRow]:
        async with inspector(args) as kafka:
            return await topic_report(kafka, prefix, args.interval)

    try:
        rows = asyncio.run(run())
    except BrokerUnreachable as exc:
        print(f"samband: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.json:
        print(json.dumps({"interval_seconds": args.interval, "topics": [asdict(r) for r in rows]}, indent=2))
    else:
        print(format_topics(rows))
    return 0


def _lag(args: argparse.Namespace) -> int:
    async def run() -> list[GroupTopicLag]:
        async with inspector(args) as kafka:
            groups = args.group or await bus_groups(kafka, get_settings().app_id)
            return await lag_report(kafka, groups)

    try:
        rows = asyncio.run(run())
    except BrokerUnreachable as exc:
        print(f"samband: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    problems = lag_problems(rows, args.max_lag)
    if args.json:
        print(json.dumps({"max_lag": args.max_lag, "lag": [asdict(r) for r in rows], "problems": problems}, indent=2))
    else:
        print(format_lag(rows))
        for problem in problems:
            print(f"UNHEALTHY: {problem}")
    return EXIT_UNHEALTHY if problems else 0


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker (default 10)")


def register(subparsers: argparse._SubParsersAction) -> None:
    topics = subparsers.add_parser(
        "topics",
        help="the bus's topics: partitions, messages held, rates",
        description="Topics with their partitions, messages held (end minus start offsets) and append rates "
        "measured over --interval seconds. Exit 2 when the broker cannot be reached.",
    )
    which = topics.add_mutually_exclusive_group()
    which.add_argument("--prefix", help="topics whose name starts with this (default: '<SAMBAND_APP_ID>-')")
    which.add_argument("--all", action="store_true", help="every topic in the cluster except Kafka's internal ones")
    which.add_argument(
        "--table", action="store_true", help="the table every bus topic is created from (no broker needed)"
    )
    topics.add_argument("--interval", type=float, default=1.0, help="seconds between the two rate samples; 0: no rates")
    add_connection_arguments(topics)
    topics.set_defaults(handler=_topics)

    lag = subparsers.add_parser(
        "lag",
        help="consumer-group lag per group and topic",
        description="Lag (end offset minus committed offset) per consumer group and topic; a stage's group "
        "counts every partition of its input, one it has never committed on from the partition's start. "
        "Exit 1 when a lag is above --max-lag, 2 when the broker cannot be reached.",
    )
    lag.add_argument("--group", action="append", help="a consumer group (repeatable; default: the bus's own groups)")
    lag.add_argument("--max-lag", type=int, help="exit 1 when any group's lag on a topic is above this")
    add_connection_arguments(lag)
    lag.set_defaults(handler=_lag)
