"""Pull delivery and recovery through a real worker: GET /subscriptions/{id}/events.

One worker serves the module; each test has subscriptions of its own. Delivery records go
straight to the worker's deliveries topic (delivery_bus), as the router would write them.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys

import aiohttp
import pytest
import yaml
from delivery_bus import running_bus
from delivery_fixtures import delivery
from kafka_io import produce
from webhook_receiver import Receiver

from agents.routing.router import PersonState

TOKENS = {
    "oslo": {
        "token": "oslo-token-0123456789abcdef",
        "owner": "Oslo kommune",
        "subscriptions": {"prefix": "oslo-"},
        "kommuner": ["0301"],
        "scopes": ["subscriptions:read", "subscriptions:write"],
    },
    "bergen": {
        "token": "bergen-token-0123456789abcdef",
        "owner": "Bergen kommune",
        "subscriptions": {"prefix": "bergen-"},
        "kommuner": ["4601"],
        "scopes": ["subscriptions:read", "subscriptions:write"],
    },
}
MOVES = {"Move": ["movedDate"]}
ADDRESS = {"kommunenummer": "0301", "streetName": "Hemmeligvegen", "houseNumber": 9, "postalCode": "0150"}


@pytest.fixture(scope="module")
async def bus(kafka_bootstrap, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pull")
    tokens = tmp / "tokens.yaml"
    tokens.write_text(yaml.safe_dump(TOKENS))
    settings = {"SAMBAND_API_TOKENS_FILE": str(tokens), "SAMBAND_PULL_POLL_INTERVAL_S": "0.5"}
    async with running_bus(kafka_bootstrap, tmp, **settings) as bus:
        yield bus


def _base(bus) -> str:
    return f"http://127.0.0.1:{bus.worker.env['SAMBAND_WEB_PORT']}"


def _as(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[tenant]['token']}"}


async def _get(bus, sub: str, tenant: str = "oslo", **query) -> aiohttp.ClientResponse:
    headers = {**_as(tenant), **query.pop("headers", {})}
    params = {k: str(v) for k, v in query.items() if v is not None}
    async with aiohttp.ClientSession() as http:
        response = await http.get(f"{_base(bus)}/subscriptions/{sub}/events", params=params, headers=headers)
        await response.read()
        return response


async def _polite(bus, sub: str, timeout: float = 60, **query) -> aiohttp.ClientResponse:
    """GET, waiting as each 429's or 503's Retry-After asks (the protocol), and while the worker starts."""
    async with asyncio.timeout(timeout):
        while True:
            assert bus.worker.process.poll() is None, bus.worker.log_tail()
            try:
                response = await _get(bus, sub, **query)
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.2)  # the worker's web server is still starting
                continue
            # 404 until the worker has read the subscription, 503 until it has read every grade
            if response.status not in (429, 404, 503):
                return response
            await asyncio.sleep(float(response.headers.get("Retry-After", "0.2")))


async def _fetch(bus, sub: str, want: int, limit: int, after: str | None = None) -> tuple[list[dict], str]:
    """Follow the cursor until `want` events have come; every page at most `limit`."""
    events: list[dict] = []
    async with asyncio.timeout(60):
        while len(events) < want:
            response = await _polite(bus, sub, limit=limit, after=after)
            assert response.status == 200, await response.text()
            page = await response.json()
            assert len(page["events"]) <= limit
            assert response.headers["ETag"] == f'"{page["next"]}"'
            events += page["events"]
            after = page["next"]
    assert after is not None
    return events, after


async def test_a_pull_subscription_pages_through_its_events_in_order_then_304_then_429(bus):
    await bus.put_subscription({"id": "oslo-pull", "fields": MOVES, "delivery": {"kind": "pull"}})
    records = bus.events_for("oslo-pull", persons=3, per_person=4)
    await bus.send(records)

    events, cursor = await _fetch(bus, "oslo-pull", want=12, limit=5)
    assert len(events) == 12
    assert {e["idempotencykey"] for e in events} == {r["idempotency_key"] for r in records}
    by_subject: dict[str, list[int]] = {}
    for e in events:  # ids ev-<person>-<n>: n is the person's n-th event
        by_subject.setdefault(e["subject"], []).append(int(e["id"].rsplit("-", 1)[1]))
    assert all(e["data"] == {"movedDate": "2024-03-01"} for e in events), "only the granted fields"
    assert sorted(by_subject.values()) == [[0, 1, 2, 3]] * 3, "each person's events in order"
    assert not {r["person"] for r in records} & set(by_subject), "the subscription's own pseudonym, not the bus's"

    # Nothing new: 304 for the page's ETag; asked again at once after that: 429 with Retry-After.
    unchanged = await _polite(bus, "oslo-pull", after=cursor, headers={"If-None-Match": f'"{cursor}"'})
    assert unchanged.status == 304
    too_fast = await _get(bus, "oslo-pull", after=cursor)
    assert too_fast.status == 429 and int(too_fast.headers["Retry-After"]) >= 1
    assert (await too_fast.json())["error"] == "events.polled_too_fast"

    later = delivery("oslo-pull", f"{7:032x}", "ev-later", 0)
    await bus.send([later])
    events, _ = await _fetch(bus, "oslo-pull", want=1, limit=5, after=cursor)
    assert [e["idempotencykey"] for e in events] == [later["idempotency_key"]]


async def test_a_pulled_event_obeys_the_persons_grade_when_it_is_fetched(bus):
    """Kept in the pull topics under no protection; fetched after the persons were graded: a
    national private system gets neither address, a kommune's private system neither event."""
    fields = {"Move": ["movedDate", "newAddress"]}
    await bus.put_subscription(
        {"id": "oslo-vern-nasjonal", "kommuner": "all", "fields": fields, "delivery": {"kind": "pull"}}
    )
    await bus.put_subscription({"id": "oslo-vern-lokal", "fields": fields, "delivery": {"kind": "pull"}})
    hidden, confidential = f"{0xA1:032x}", f"{0xB2:032x}"
    for sub in ("oslo-vern-nasjonal", "oslo-vern-lokal"):
        records = []
        for person in (hidden, confidential):
            record = delivery(sub, person, f"ev-vern-{person[-2:]}", 0)
            record["event"]["data"] = {"movedDate": "2026-12-01", "newAddress": copy.deepcopy(ADDRESS)}
            records.append(record)
        await bus.send(records)
        events, _ = await _fetch(bus, sub, want=2, limit=10)
        assert all(e["data"]["newAddress"]["streetName"] == "Hemmeligvegen" for e in events)

    await produce(
        bus.bootstrap,
        bus.topic("router-persons"),
        [PersonState("strengtFortrolig").to_json(), PersonState("fortrolig").to_json()],
        [hidden.encode(), confidential.encode()],
    )
    async with asyncio.timeout(60):
        while True:  # the worker follows the grades; read from the start again until they show
            response = await _polite(bus, "oslo-vern-nasjonal", limit=10)
            body = await response.read()
            if b"Hemmeligvegen" not in body:
                break
            await asyncio.sleep(0.5)  # poll interval inside the timeout
    page = await response.json()
    assert sorted(e["data"]["movedDate"] for e in page["events"]) == ["2026-12-01"] * 2
    assert all("newAddress" not in e["data"] for e in page["events"])
    local = await _polite(bus, "oslo-vern-lokal", limit=10)
    assert (await local.json())["events"] == [], "a kommune's private system gets neither person's event now"


async def test_another_tenant_no_token_a_foreign_cursor_and_a_bad_limit_are_refused(bus):
    await bus.put_subscription({"id": "oslo-egen", "fields": MOVES, "delivery": {"kind": "pull"}})
    await bus.put_subscription({"id": "oslo-annen", "fields": MOVES, "delivery": {"kind": "pull"}})
    assert (await _polite(bus, "oslo-egen")).status == 200
    others = await (await _polite(bus, "oslo-annen")).json()
    assert (await _get(bus, "oslo-egen", tenant="bergen")).status == 404
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{_base(bus)}/subscriptions/oslo-egen/events") as response:
            assert response.status == 401
    for query, code in (
        ({"after": others["next"]}, "request.invalid_cursor"),  # another subscription's: signed for it only
        ({"after": "bm90LWEtY3Vyc29y"}, "request.invalid_cursor"),
        ({"limit": 0}, "request.invalid_limit"),
    ):
        response = await _polite(bus, "oslo-egen", **query)
        assert response.status == 400 and (await response.json())["error"] == code


async def test_a_webhook_subscription_reads_back_what_it_was_sent(bus):
    """Recovery: what the router sent a webhook subscription, with the webhook's idempotency keys."""
    receiver = Receiver(bus.secret)
    await receiver.start()
    try:
        await bus.put_subscription(
            {
                "id": "oslo-hook",
                "fields": MOVES,
                "delivery": {"kind": "webhook", "url": receiver.url, "secret_ref": "file:oslo-hook", "read_timeout": 2},
            }
        )
        records = bus.events_for("oslo-hook", persons=2, per_person=2)
        await bus.send(records)
        await bus.wait_for(receiver, lambda: len(receiver.events()) >= 4, 60, "four events delivered")
    finally:
        await receiver.stop()
    events, _ = await _fetch(bus, "oslo-hook", want=4, limit=100)
    assert sorted(e["idempotencykey"] for e in events) == sorted(r.webhook_id for r in receiver.events())
    assert {e["subject"] for e in events} == {r.event["subject"] for r in receiver.events()}

    # The grant withdrawn: what was sent under it is no longer read back.
    await bus.put_subscription(
        {
            "id": "oslo-hook",
            "fields": {"Death": ["deathDate"]},
            "delivery": {"kind": "webhook", "url": receiver.url, "secret_ref": "file:oslo-hook", "read_timeout": 2},
        }
    )
    async with asyncio.timeout(60):
        while (await (await _polite(bus, "oslo-hook", limit=100)).json())["events"]:
            await asyncio.sleep(0.5)  # until the worker has read the change: poll interval inside the timeout


async def test_schemathesis_finds_no_server_error_on_the_events_endpoint(bus, tmp_path):
    """Fuzzed after, limit and If-None-Match on a subscription the token owns, with events to read:
    every answer is one the OpenAPI document declares, and none is a 5xx."""
    await bus.put_subscription({"id": "oslo-fuzz", "fields": MOVES, "delivery": {"kind": "pull"}})
    await bus.send(bus.events_for("oslo-fuzz", persons=3, per_person=3))
    await _fetch(bus, "oslo-fuzz", want=9, limit=100)
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f'headers = {{ Authorization = "Bearer {TOKENS["oslo"]["token"]}" }}\n'
        '[[operations]]\ninclude-path = "/subscriptions/{id}/events"\nparameters = { "id" = "oslo-fuzz" }\n'
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{_base(bus)}/openapi.json",
        "--include-path", "/subscriptions/{id}/events", "--max-examples", "40", "--seed", "19",
        "--checks", "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
        "--report", "har", "--report-dir", str(tmp_path / "report"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, output.decode()[-4000:]
    (har,) = (tmp_path / "report").glob("har-*.json")
    entries = json.loads(har.read_text())["log"]["entries"]
    statuses = {entry["response"]["status"] for entry in entries}
    assert all("/subscriptions/oslo-fuzz/events" in entry["request"]["url"] for entry in entries)
    assert 200 in statuses and not any(status >= 500 for status in statuses), statuses
