"""A person's access report (GDPR article 15): which systems received which events about the
person, when, under which legal basis, and with which fields.

    report = await person_report(bootstrap, app_id, pseudonym)   # PersonReport
    print(format_text(report)); page = format_html(report)

Read from Kafka, all topics prefixed with the app id:
- `-disclosures`: each delivered event, keyed by the bus's pseudonym of the person, with its
  type and the paths of the `data` fields that left (agents/delivery/ledger.py), kept for
  SAMBAND_DISCLOSURE_RETENTION_DAYS;
- `-subscriptions`: the system, owner and legal basis of each subscription, as they are now;
- `-router-persons`: the person's protection grade now.
The identity number is never stored: the caller turns it into the pseudonym with
SAMBAND_PSEUDONYM_KEY, and the report holds neither. Field names only, never values. The
report of a strengt fortrolig person is marked so and lists no address. Where a system serves
one or some kommuner, its name would tell where the person lives: such a row says only that a
municipal system received the event. Events delivered before the bus kept disclosures (before
issue 19), or longer ago than the retention, are not in the report; it says so.
A scan of whole topics: an operator's tool, not a hot path.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import orjson

from agents.routing.router import PersonState
from agents.subscriptions import store
from bus.malformed import MALFORMED
from bus.reading import read_topic
from bus.topics import topic_names
from schemas.protection import is_strict


@dataclass
class Received:
    at: str
    subscription: str
    system: str | None
    owner: str | None
    legal_basis: str | None
    event_type: str
    event_id: str
    fields: list[str]


@dataclass
class PersonReport:
    protection: str
    generated_at: str
    received: list[Received] = field(default_factory=list)

    @property
    def strictly_confidential(self) -> bool:
        return is_strict(self.protection)

    def as_json(self) -> dict:
        return asdict(self) | {"strengt_fortrolig": self.strictly_confidential}


async def person_report(bootstrap: str, app_id: str, pseudonym: str) -> PersonReport:
    topics = topic_names(app_id)
    latest: dict[bytes, dict] = {}  # disclosure key -> its latest entry (a replay delivers again)
    mine = f"{pseudonym}/".encode()
    async for record in read_topic(bootstrap, topics.disclosures):
        if not record.key.startswith(mine) or record.value is None:
            continue
        try:
            entry = orjson.loads(record.value)
        except MALFORMED:
            continue
        if isinstance(entry, dict) and (record.key not in latest or entry["at"] > latest[record.key]["at"]):
            latest[record.key] = entry
    subscriptions: dict[str, dict] = {}
    for sub_id, value in (await store.read_all(bootstrap, topics.subscriptions)).items():
        try:
            parsed = orjson.loads(value)
        except MALFORMED:
            continue
        subscriptions[sub_id] = parsed if isinstance(parsed, dict) else {}
    protection = "ugradert"
    async for record in read_topic(bootstrap, topics.router_persons):
        if record.key == pseudonym.encode():
            try:
                protection = PersonState.from_json(record.value).protection
            except MALFORMED:  # unreadable: read as the strictest grade, as the router does
                protection = "strengtFortrolig"
    received = []
    for entry in sorted(latest.values(), key=lambda e: (e["at"], e["subscription"])):
        sub = subscriptions.get(entry["subscription"]) or {}
        system = sub.get("system") or {}
        named = not is_strict(protection) or sub.get("kommuner") == "all"
        received.append(
            Received(
                at=entry["at"],
                subscription=entry["subscription"] if named else WITHHELD,
                system=_plain(system.get("name")) if named else WITHHELD,
                owner=_plain(system.get("owner")) if named else None,
                legal_basis=_plain(sub.get("legal_basis")),
                event_type=str(entry.get("event_type", "")).rpartition(".")[2],
                event_id=entry["event_id"],
                fields=[str(f) for f in entry.get("fields") or []],
            )
        )
    return PersonReport(protection, datetime.now(UTC).isoformat(timespec="seconds"), received)


WITHHELD = "a municipal system (name withheld: it would tell where the person lives)"
_CONTROL = dict.fromkeys(range(32), " ") | {127: " "}


def _plain(text) -> str | None:
    """A tenant's free text, with no control characters (no terminal escapes in the CLI's output)."""
    return None if text is None else str(text).translate(_CONTROL)


COVERS = (
    "It lists the events delivered since the bus began to keep disclosures (issue 19), within the "
    "retention of SAMBAND_DISCLOSURE_RETENTION_DAYS; legal bases and owners are as the subscriptions say now."
)


def format_text(report: PersonReport) -> str:
    lines = [f"Access report, made {report.generated_at}. {COVERS}"]
    if report.strictly_confidential:
        lines.append("STRENGT FORTROLIG: the person's address is protected; this report lists no address.")
    if not report.received:
        lines.append("No system has received an event about the person.")
    for r in report.received:
        lines.append(
            f"  {r.at}  {r.event_type:<28} to {r.system or r.subscription} ({r.owner or '-'}), "
            f"legal basis: {r.legal_basis or '-'}; fields: {', '.join(r.fields) or '-'}"
        )
    return "\n".join(lines)


def format_html(report: PersonReport) -> str:
    """A page the person can be given: the same rows, every text escaped."""
    e = html.escape
    rows = "\n".join(
        f"<tr><td>{e(r.at)}</td><td>{e(r.event_type)}</td><td>{e(r.system or r.subscription)}</td>"
        f"<td>{e(r.owner or '')}</td><td>{e(r.legal_basis or '')}</td><td>{e(', '.join(r.fields))}</td></tr>"
        for r in report.received
    )
    mark = (
        '<p class="protected"><strong>STRENGT FORTROLIG.</strong> The address is protected; this report lists no '
        "address.</p>"
        if report.strictly_confidential
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Access report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}.protected{{color:#b3261e}}</style></head>
<body><h1>Which systems received information about you</h1>
<p>Made {e(report.generated_at)} from the event bus's record of what it delivered (GDPR article 15).
{e(COVERS)}</p>
{mark}
<table><thead><tr><th>when</th><th>event</th><th>system</th><th>owner</th><th>legal basis</th><th>fields</th></tr></thead>
<tbody>
{rows or '<tr><td colspan="6">No system has received an event about you.</td></tr>'}
</tbody></table></body></html>
"""
