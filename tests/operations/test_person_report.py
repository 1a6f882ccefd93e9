"""Issue 19, citizen access (GDPR article 15), through a whole worker, real receivers, the CLI and
the API: which systems received which events about one person, when, under which legal basis
and with which fields; never another person's; a strengt fortrolig person's report is marked,
lists no address and names no system that would tell where the person lives; every report is
audit-logged with the person's pseudonym; the number is never stored."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from bus_settings import PSEUDONYM_KEY
from kafka_io import read_to_end
from ops_bus import READ_ONLY_TOKEN, REPLAY_TOKEN, full_subscription, operations_bus
from routing_events import address, event, synthetic_number
from samband_cli import samband
from test_protection_at_egress import FAST, MOVE_FIELDS, _send
from webhook_receiver import Receiver

from agents.person_report import WITHHELD
from schemas.pseudonym import pseudonym

PORTAL_TOKEN = "test-token-portal-0001"  # a citizen portal's: persons:report only
SUBS_OPERATOR = "test-token-subscriptions-operator"
PURGE = "no.samband.purge"
PERSON = synthetic_number(15, 11, 86, 580)
PROTECTED = synthetic_number(16, 11, 86, 590)
OTHER = synthetic_number(17, 11, 86, 600)


@pytest.fixture(scope="module")
async def report_bus(kafka_bootstrap, tmp_path_factory):
    tokens = (
        f"{REPLAY_TOKEN}=dlq:replay+subscriptions:read+operations:read,{READ_ONLY_TOKEN}=subscriptions:read,"
        f"{PORTAL_TOKEN}=persons:report,{SUBS_OPERATOR}=subscriptions:operator+subscriptions:read"
    )
    async with operations_bus(
        kafka_bootstrap, tmp_path_factory.mktemp("report-bus"), {"SAMBAND_API_TOKENS": tokens}
    ) as bus:
        yield bus


def _move(person: str) -> dict:
    return event(
        "Move", person, ["4601"], previousAddress=address("4601", "Gamlevegen", 1),
        newAddress=address("4601", "Nyvegen", 2), scope="withinKommune", cause="relocation",
    )  # fmt: skip


async def _flow(bus) -> dict:
    """Three subscriptions (two national, one Bergen's) get a Move of each person; then PROTECTED
    becomes strengt fortrolig, and each is sent a purge. Returns the Move of PERSON."""
    receivers = {sub_id: Receiver(bus.secret) for sub_id in ("report-helse", "report-skole", "report-bergen")}
    for receiver in receivers.values():
        await receiver.start()
    try:
        grants = {"report-helse": MOVE_FIELDS, "report-skole": ["movedDate"], "report-bergen": ["movedDate"]}
        for sub_id, receiver in receivers.items():
            kommuner = ["4601"] if sub_id == "report-bergen" else "all"
            await bus.put_subscription(
                full_subscription(sub_id, receiver.url, kommuner, ["Move"], {"Move": grants[sub_id]}, **FAST)
            )
            await bus.wait_for(receiver, receiver.verified, 60, f"{sub_id} verified")
        mine = _move(PERSON)
        await _send(bus, mine, _move(OTHER), _move(PROTECTED))
        for receiver in receivers.values():
            await bus.wait_for(receiver, lambda r=receiver: len(r.events()) == 3, 60, "the three Moves")
        await _send(bus, event("AddressProtectionChange", PROTECTED, ["4601"], protection="strengtFortrolig"))
        for receiver in receivers.values():
            await bus.wait_for(receiver, lambda r=receiver: r.events()[-1].event["type"] == PURGE, 60, "the purge")
    finally:
        for receiver in receivers.values():
            await receiver.stop()
    return mine


async def test_a_persons_report_lists_each_system_event_legal_basis_and_field_and_nothing_else(report_bus, tmp_path):
    mine = await _flow(report_bus)
    env = {"SAMBAND_APP_ID": report_bus.app_id, "SAMBAND_PSEUDONYM_KEY": PSEUDONYM_KEY}
    page = tmp_path / "report.html"
    report: dict = {"received": []}
    async with asyncio.timeout(60):
        while len(report["received"]) < 3:  # the disclosures are written just after the deliveries' outcomes
            done = await samband(
                report_bus.bootstrap, "person", "report", PERSON, "--json", "--html", str(page), env=env
            )
            assert done.code == 0, done.stderr
            report = done.json()
    rows = {(r["subscription"], r["event_id"]) for r in report["received"]}
    assert rows == {(sub, mine["envelope"]["id"]) for sub in ("report-helse", "report-skole", "report-bergen")}
    by_sub = {r["subscription"]: r for r in report["received"]}
    assert by_sub["report-skole"]["fields"] == ["movedDate"]
    assert {"newAddress.streetName", "envelope.kommunenummer"} <= set(by_sub["report-helse"]["fields"])
    assert (
        by_sub["report-helse"]["event_type"] == "Move" and by_sub["report-bergen"]["system"] == "System report-bergen"
    )
    assert by_sub["report-helse"]["legal_basis"].startswith("Testhjemmel") and report["strengt_fortrolig"] is False
    text = page.read_text("utf-8")
    assert "System report-helse" in text and PERSON not in text and "Nyvegen" not in text
    # Nothing of the number is kept: not in the output, the audit log or any topic the report reads.
    assert PERSON not in done.stdout + done.stderr
    audit = await samband(report_bus.bootstrap, "audit", "--json", env=env)
    entries = [json.loads(line) for line in audit.stdout.splitlines() if '"person_report"' in line]
    assert {(e["via"], e["person"]) for e in entries} == {("cli", pseudonym(PERSON, PSEUDONYM_KEY.encode()))}
    for topic in ("audit", "delivery-ledger", "disclosures"):
        records = await read_to_end(report_bus.bootstrap, report_bus.topic(topic))
        assert records and all(PERSON.encode() not in (r.value or b"") + (r.key or b"") for r in records), topic

    # Through the API, for a citizen portal: only with persons:report, the number in the body.
    async with aiohttp.ClientSession(report_bus.web_url) as http:
        for token in (READ_ONLY_TOKEN, REPLAY_TOKEN, SUBS_OPERATOR):
            async with http.post(
                "/api/person-report", json={"person": PROTECTED}, headers={"Authorization": f"Bearer {token}"}
            ) as response:
                assert response.status == 403, token
        portal = {"Authorization": f"Bearer {PORTAL_TOKEN}"}
        async with http.post("/api/person-report", json={"person": "12345678901"}, headers=portal) as response:
            assert response.status == 422 and "12345678901" not in await response.text()
        async with http.post("/api/person-report", json={"person": PROTECTED}, headers=portal) as response:
            assert response.status == 200
            protected = await response.json()
        async with http.post(
            "/api/person-report", json={"person": PROTECTED}, headers={**portal, "Accept": "text/html"}
        ) as response:
            assert response.status == 200 and "STRENGT FORTROLIG" in await response.text()
    assert protected["strengt_fortrolig"] is True and protected["protection"] == "strengtFortrolig"
    # The Move before the protection went to all three, then each was told to delete the address (a
    # purge: a disclosure too); the kommune's system is not named.
    rows = sorted((r["subscription"], r["event_type"]) for r in protected["received"])
    assert rows == sorted((s, kind) for s in ("report-helse", "report-skole", WITHHELD) for kind in ("Move", "purge"))
    assert "report-bergen" not in json.dumps(protected)
    audit = await samband(report_bus.bootstrap, "audit", "--json", env=env)
    api = [json.loads(line) for line in audit.stdout.splitlines()]
    assert [e["outcome"] for e in api if e["action"] == "person_report" and e["via"] == "api"] == [
        "identity.checksum", "ok", "ok"
    ]  # fmt: skip


async def test_the_cli_refuses_a_report_without_the_buss_pseudonym_key(report_bus):
    """Found in review: without SAMBAND_PSEUDONYM_KEY the development key gave another pseudonym,
    and the report said, wrongly, that no system had received anything."""
    env = {"SAMBAND_APP_ID": report_bus.app_id, "SAMBAND_DEVELOPMENT": "false", "SAMBAND_PSEUDONYM_KEY": ""}
    done = await samband(report_bus.bootstrap, "person", "report", PERSON, env=env)
    assert done.code == 2 and "SAMBAND_PSEUDONYM_KEY" in done.stderr and PERSON not in done.stderr
