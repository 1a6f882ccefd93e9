"""`samband audit [--subscription ID] [--name NAME] [--since TIME] [--json]`: who wrote which subscription, and when.

Lists the audit topic `<app id>-audit` (agents/subscriptions/audit.py), most recent last:
every write through the HTTP API (refused ones too, with their error code) and through
`samband subscriptions`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime

from agents.cli import UsageError
from agents.config import bootstrap_servers, get_settings
from agents.subscriptions.audit import AuditLog
from bus.topics import topic_names


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("audit", help="who created, changed or deleted which subscription, most recent last")
    parser.add_argument("--subscription", metavar="ID", help="only this subscription's entries")
    parser.add_argument("--name", help="only this token's (or OS user's) entries")
    parser.add_argument(
        "--since", metavar="TIME", help="only entries at or after this ISO 8601 time (UTC if no offset)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(handler=show)


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since: not an ISO 8601 time: {text!r} (e.g. 2026-03-01 or 2026-03-01T12:00)") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def show(args) -> int:
    since = _since(args.since)
    log = AuditLog(bootstrap_servers(), topic_names(get_settings().app_id).audit)
    entries = [
        e
        for e in asyncio.run(log.entries())
        if args.subscription in (None, e["subscription"])
        and args.name in (None, e["name"])
        and (since is None or datetime.fromisoformat(e["time"]) >= since)
    ]
    if args.json:
        for e in entries:
            print(json.dumps(e, ensure_ascii=False))
        return 0
    print(
        f"{'time':<29} {'via':<4} {'name':<24} {'owner':<24} {'action':<15} {'subscription':<32} {'outcome':<24} detail"
    )
    for e in entries:
        print(
            f"{e['time']:<29} {e['via']:<4} {e['name']:<24} {e['owner'] or '-':<24} {e['action']:<15} "
            f"{e['subscription'] or '-':<32} {e['outcome']:<24} {e.get('detail', '')}".rstrip()
        )
    return 0
