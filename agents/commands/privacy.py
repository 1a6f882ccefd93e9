"""`samband privacy scan`: is there personal data where none may be? Exit 1 on any finding.

    samband privacy scan [--logs FILE ...]

Reads every topic of the app id (SAMBAND_APP_ID) but the internal ingest and events topics and
the router's changelogs, every Kafka subscriber's topic, and each log file given, line by line.
Prints one line per finding (topic, partition and offset, or file and line; the kind; the
field), never the data found. Rules: docs/security.md; logic: agents/privacy_scan.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path

from agents.config import bootstrap_servers, get_settings


async def run_scan(bootstrap: str, app_id: str, subscriber_prefix: str, logs: list[Path]):
    """(findings, topics read) over the app id's topics and the log files."""
    from agents.privacy_scan import learn, scan_log, scan_topics
    from schemas.codec import Codec
    from schemas.registry import registry_from_settings

    settings = get_settings()
    bus = await learn(bootstrap, app_id, Codec(registry_from_settings(settings)))
    key = settings.pseudonym_key.encode() if settings.pseudonym_key else None  # recognises subscribers' subjects
    findings, topics = await scan_topics(bootstrap, app_id, bus, subscriber_prefix, key)
    for path in logs:
        findings += scan_log(path, bus)
    return findings, topics


def _scan(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from bus.inspector import BrokerUnreachable

    logs = [Path(name) for name in args.logs]
    missing = [str(p) for p in logs if not p.is_file()]
    if missing:
        print(f"samband: privacy scan: no such log file: {', '.join(missing)}", file=sys.stderr)
        return 2
    settings = get_settings()
    try:
        findings, topics = asyncio.run(
            run_scan(bootstrap_servers(), settings.app_id, settings.subscriber_topic_prefix, logs)
        )
    except BrokerUnreachable as exc:
        print(f"samband: privacy scan: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"samband: privacy scan: Kafka at {bootstrap_servers()} failed: {type(exc).__name__}", file=sys.stderr)
        return 2
    if args.json:
        scanned = {"topics": topics, "logs": [str(p) for p in logs]}
        print(json.dumps({"findings": [asdict(f) for f in findings], "scanned": scanned}, indent=2))
        return 1 if findings else 0
    for finding in findings:
        print(finding)
    print(f"{len(findings)} finding(s) in {len(topics)} topic(s) of {settings.app_id} and {len(logs)} log file(s)")
    return 1 if findings else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    privacy = subparsers.add_parser("privacy", help="privacy checks of the bus's topics and logs")
    commands = privacy.add_subparsers(dest="privacy_command", metavar="COMMAND", required=True)
    scan = commands.add_parser(
        "scan",
        help="find identity numbers and protected addresses where none may be (exit 1)",
        description=__doc__.split("\n\n")[0],
    )
    scan.add_argument("--logs", nargs="+", default=[], metavar="FILE", help="log files to scan line by line")
    scan.add_argument("--json", action="store_true", help="the findings as JSON (never a value: places and kinds)")
    scan.set_defaults(handler=_scan)
