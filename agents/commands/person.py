"""`samband person report NUMBER`: the person's access report (GDPR article 15).

    samband person report - [--json] [--html FILE]     # the number read from stdin (kept out of `ps`)
    samband person report NUMBER [--json] [--html FILE]

Which systems received which events about the person, when, under which legal basis, and with
which fields (agents/person_report.py). The number becomes the bus's pseudonym at once
(SAMBAND_PSEUDONYM_KEY) and is never stored, logged or printed. Each report is audit-logged
(`samband audit`: action `person_report`, under the OS user's name, with the person's
pseudonym). Exit 2 for a number that is not a valid identity number (said without repeating it),
or without SAMBAND_PSEUDONYM_KEY (another key gives another pseudonym: a false "nothing").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from agents.cli import UsageError
from agents.config import bootstrap_servers, get_settings, require_keys


def _report(args: argparse.Namespace) -> int:
    from agents.person_report import format_html, format_text, person_report
    from agents.subscriptions.audit import AuditLog, os_user
    from bus.topics import topic_names
    from schemas.identity import InvalidIdentity, parse_identity
    from schemas.pseudonym import pseudonym

    number = sys.stdin.readline().strip() if args.number == "-" else args.number
    try:
        parse_identity(number)
    except InvalidIdentity as exc:
        raise UsageError(f"person report: {exc} ({exc.reason})") from None
    settings = get_settings()
    require_keys(settings)  # a missing key would give another pseudonym, and a false "nothing received"
    person = pseudonym(number, settings.pseudonym_key.encode())
    del number

    async def run():
        report = await person_report(bootstrap_servers(), settings.app_id, person)
        audit = AuditLog(bootstrap_servers(), topic_names(settings.app_id).audit)
        entry = {"name": os_user(), "owner": "samband CLI", "action": "person_report", "subscription": None}
        await audit.record_all([entry | {"outcome": "ok", "via": "cli", "person": person}])
        return report

    report = asyncio.run(run())
    if args.html:
        Path(args.html).write_text(format_html(report), "utf-8")
    print(json.dumps(report.as_json(), indent=2, ensure_ascii=False) if args.json else format_text(report))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    person = subparsers.add_parser("person", help="what the bus has done with one person's data")
    commands = person.add_subparsers(dest="person_command", metavar="COMMAND", required=True)
    report = commands.add_parser(
        "report",
        help="which systems received which events about a person (GDPR art. 15); audit-logged",
        description=__doc__.split("\n\n")[0],
    )
    report.add_argument("number", help="the identity number, or - to read it from stdin (keeps it out of `ps`)")
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.add_argument("--html", metavar="FILE", help="also write the report as an HTML page the person can be given")
    report.set_defaults(handler=_report)
