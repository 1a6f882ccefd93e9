"""Issue 19, citizen access (GDPR article 15), through a whole worker, real receivers, the CLI and
the API: which systems received which events about one person, when, under which legal basis
and with which fields; never another person's; a strengt fortrolig person's report is marked and
lists no address; every report is audit-logged; the number is never stored."""

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

OPERATOR_TOKEN = "test-token-operator-0001"
PERSON = synthetic_number(15, 11, 86, 580)
PROTECTED = synthetic_number(16, 11, 86, 590)
OTHER = synthetic_number(17, 11, 86, 600)


@pytest.fixture(scope="module")
async def report_bus(kafka_bootstrap, tmp_path_factory):
    tokens = (
        f"{REPLAY_TOKEN}=dlq:replay+subscriptions:read+operations:read,{READ_ONLY_TOKEN}=subscriptions:read,"
        f"{OPERATOR_TOKEN}=subscriptions:operator+subscriptions:read"
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


async def test_a_persons_report_lists_each_system_event_legal_basis_and_field_and_nothing_else(report_bus, tmp_path):
    helse, skole = Receiver(report_bus.secret), Receiver(report_bus.secret)
    for receiver in (helse, skole):
        await receiver.start()
    try:
        await report_bus.put_subscription(
            full_subscription("report-helse", helse.url, "all", ["Move"], {"Move": MOVE_FIELDS}, **FAST)
        )
        await report_bus.put_subscription(
            full_subscription("report-skole", skole.url, "all", ["Move"], {"Move": ["movedDate"]}, **FAST)
        )
        for receiver, sub_id in ((helse, "report-helse"), (skole, "report-skole")):
            await report_bus.wait_for(receiver, receiver.verified, 60, f"{sub_id} verified")
        mine, protected_move, others = _move(PERSON), _move(PROTECTED), _move(OTHER)
        protected_move["envelope"]["addressProtection"] = "strengtFortrolig"
        await _send(report_bus, mine, others, protected_move)
        for receiver in (helse, skole):
            await report_bus.wait_for(receiver, lambda r=receiver: len(r.events()) >= 3, 60, "the three Moves")
    finally:
        for receiver in (helse, skole):
            await receiver.stop()
    env = {"SAMBAND_APP_ID": report_bus.app_id, "SAMBAND_PSEUDONYM_KEY": PSEUDONYM_KEY}
    page = tmp_path / "report.html"
    report: dict = {"received": []}
    async with asyncio.timeout(60):
        while len(report["received"]) < 2:  # the ledger is written just after the deliveries' outcomes
            done = await samband(
                report_bus.bootstrap, "person", "report", PERSON, "--json", "--html", str(page), env=env
            )
            assert done.code == 0, done.stderr
            report = done.json()
    rows = {(r["subscription"], r["event_id"]) for r in report["received"]}
    assert rows == {("report-helse", mine["envelope"]["id"]), ("report-skole", mine["envelope"]["id"])}
    by_sub = {r["subscription"]: r for r in report["received"]}
    assert by_sub["report-skole"]["fields"] == ["movedDate"]
    assert (
        "newAddress.streetName" in by_sub["report-helse"]["fields"] and by_sub["report-helse"]["event_type"] == "Move"
    )
    assert by_sub["report-helse"]["legal_basis"].startswith("Testhjemmel") and by_sub["report-helse"]["system"]
    assert report["strengt_fortrolig"] is False
    text = page.read_text("utf-8")
    assert "System report-helse" in text and PERSON not in text and "Nyvegen" not in text
    # Nothing of the number is kept: not in the output, the audit log or any topic of the bus.
    assert PERSON not in done.stdout + done.stderr
    audit = await samband(report_bus.bootstrap, "audit", "--json", env=env)
    entries = [json.loads(line) for line in audit.stdout.splitlines()]
    assert {(e["action"], e["via"]) for e in entries if e["action"] == "person_report"} == {("person_report", "cli")}
    for topic in ("audit", "delivery-ledger"):
        assert all(
            PERSON.encode() not in (r.value or b"")
            for r in await read_to_end(report_bus.bootstrap, report_bus.topic(topic))
        )

    # Through the API, for a citizen portal: the operator's token only, the number in the body.
    async with aiohttp.ClientSession(report_bus.web_url) as http:
        for token, status in ((READ_ONLY_TOKEN, 403), (REPLAY_TOKEN, 403)):
            async with http.post("/api/person-report", json={"person": PROTECTED},
                                 headers={"Authorization": f"Bearer {token}"}) as response:  # fmt: skip
                assert response.status == status
        operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        async with http.post("/api/person-report", json={"person": "12345678901"}, headers=operator) as response:
            assert response.status == 422 and "12345678901" not in await response.text()
        async with http.post("/api/person-report", json={"person": PROTECTED}, headers=operator) as response:
            assert response.status == 200
            protected = await response.json()
        async with http.post(
            "/api/person-report", json={"person": PROTECTED}, headers={**operator, "Accept": "text/html"}
        ) as response:
            assert response.status == 200 and "STRENGT FORTROLIG" in await response.text()
    assert protected["strengt_fortrolig"] is True and protected["protection"] == "strengtFortrolig"
    assert {r["subscription"] for r in protected["received"]} == {"report-helse", "report-skole"}
    for row in protected["received"]:  # the address was withheld, so no address field left
        assert not [f for f in row["fields"] if f.startswith(("newAddress", "previousAddress", "envelope.kommune"))]
    audit = await samband(report_bus.bootstrap, "audit", "--json", env=env)
    vias = [json.loads(line)["via"] for line in audit.stdout.splitlines() if '"person_report"' in line]
    assert vias.count("api") == 2 and set(vias) == {"cli", "api"}
