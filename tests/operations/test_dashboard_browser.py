"""The operations dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright):
the page loads, its charts draw the worker's own history while events flow, each subscription has
a sparkline, the dead letters of every stage are listed and filtered, replay needs a dlq:replay
token and brings a dead-lettered event to the (fixed) receiver with its original webhook-id, the
trace reads as a timeline, and a narrow (phone) screen needs no sideways scrolling. Screenshots go
to the test's own folder; the ones in docs/operations.md come from a demo run
(`make dashboard-pictures`)."""

from __future__ import annotations

import asyncio
import itertools
import re
import time

import aiohttp
import pytest
from delivery_fixtures import delivery
from ops_bus import READ_ONLY_TOKEN, REPLAY_TOKEN, operations_bus
from playwright.async_api import async_playwright, expect
from webhook_receiver import VALIDATION_TYPE, Receiver, Reply

from agents.demo.pictures import ARGS as CHROMIUM_ARGS
from agents.demo.pictures import CHROMIUM
from connectors.dead_letters import DeadLetter

FLOW, REJECTING = "ops-dash-flow", "ops-dash-rejecting"
FAST = {"retry_schedule": [0.2, 0.2], "read_timeout": 1.0, "connect_timeout": 0.5}


@pytest.fixture(scope="module")
async def ops_bus(kafka_bootstrap, tmp_path_factory):
    """The operations bus, sampling the dashboard's history every second (the default is 10 s)."""
    extra = {"SAMBAND_DASHBOARD_SAMPLE_S": "1", "SAMBAND_DEAD_LETTER_LIMITS": "source=0,deliver=1000"}
    async with operations_bus(kafka_bootstrap, tmp_path_factory.mktemp("dash-bus"), extra) as bus:
        yield bus


@pytest.fixture(autouse=True)
def _chromium_installed():
    # A missing browser fails the test rather than skipping it: the dashboard must be proven.
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: `make test` installs it (apt-get install chromium)")


async def _keep_sending(bus) -> None:
    for n in itertools.count():
        # As ingest marks an event (agents/ingest/stage.py): the latency chart measures from here.
        ingested = [("samband-ingested-at", str(time.time() - 0.05).encode())]
        await bus.send([delivery(FLOW, f"{n % 4:032x}", f"ops-dash-{n}", n // 4)], headers=ingested)
        await asyncio.sleep(0.2)  # the pace of the flow, not a wait for an outcome


async def _points(page, chart: str, series: str) -> int:
    """How many points the chart's line for the series has (0 without one)."""
    return await page.evaluate(
        """([chart, series]) => {
            const line = document.querySelector(`#${chart} polyline[data-series="${series}"]`);
            return line ? line.getAttribute("points").trim().split(" ").filter(Boolean).length : 0;
        }""",
        [chart, series],
    )


async def test_dashboard_shows_live_numbers_replays_dead_letters_and_traces(ops_bus, tmp_path):
    rejecting = True

    def behaviour(_n, event) -> Reply:
        return Reply(400) if rejecting and event["type"] != VALIDATION_TYPE else Reply()

    flow_receiver, fixed_receiver = Receiver(ops_bus.secret), Receiver(ops_bus.secret, behaviour)
    for receiver in (flow_receiver, fixed_receiver):
        await receiver.start()
    flow = None
    try:
        await ops_bus.subscribe(FLOW, flow_receiver.url, **FAST)
        await ops_bus.subscribe(REJECTING, fixed_receiver.url, **FAST)
        dead = delivery(REJECTING, "d" * 32, "ops-dash-dead-letter")
        await ops_bus.send([dead])
        await ops_bus.wait_for(fixed_receiver, lambda: len(fixed_receiver.received) >= 2, 60, "the event refused")
        flow = asyncio.create_task(_keep_sending(ops_bus))
        await ops_bus.wait_for(flow_receiver, lambda: len(flow_receiver.events()) >= 3, 60, "events flowing")

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                await page.goto(f"{ops_bus.web_url}/dashboard")
                await expect(page.locator("h1")).to_have_text("Samband operations")
                await page.fill("#token", REPLAY_TOKEN)  # every /api call needs a token; this one may read and replay

                records = page.locator(f'#throughput tr[data-topic="{ops_bus.topic("deliveries")}"] td.records')
                await expect(records).to_have_text(re.compile(r"^\d+$"), timeout=20_000)
                before = int(await records.inner_text())
                await page.wait_for_function(
                    """([selector, before]) => Number(document.querySelector(selector)?.textContent) > before""",
                    arg=[f'#throughput tr[data-topic="{ops_bus.topic("deliveries")}"] td.records', before],
                    timeout=20_000,
                )
                flow_row = page.locator(f'#subscriptions tr[data-subscription="{FLOW}"]')
                await expect(flow_row.locator("td.state")).to_have_text("active", timeout=20_000)
                await expect(page.locator("#health")).to_have_text("HEALTHY")
                # The charts draw the worker's history: lines that grow a point per sample.
                for chart, series in (
                    ("chart-throughput", "route"),
                    ("chart-throughput", "deliver"),
                    ("chart-latency", "p50"),
                    ("chart-latency", "p99"),
                    ("chart-lag", "delivery"),
                ):
                    await page.wait_for_function(
                        """([chart, series]) => {
                            const line = document.querySelector(`#${chart} polyline[data-series="${series}"]`);
                            return line && line.getAttribute("points").trim().split(" ").length >= 3;
                        }""",
                        arg=[chart, series],
                        timeout=30_000,
                    )  # fmt: skip
                before_points = await _points(page, "chart-throughput", "route")
                await page.wait_for_function(
                    """([n]) => document.querySelector('#chart-throughput polyline[data-series="route"]')
                        .getAttribute("points").trim().split(" ").length > n""",
                    arg=[before_points],
                    timeout=20_000,
                )
                spark = flow_row.locator("td.sparkline")
                await expect(spark.locator("polyline").first).to_be_attached()
                await page.wait_for_function(
                    f"""() => Number(document.querySelector('#subscriptions tr[data-subscription="{FLOW}"] td.sparkline')
                        ?.dataset.delivered) > 0""",
                    timeout=20_000,
                )

                row = page.locator(f'#subscriptions tr[data-subscription="{REJECTING}"]')
                await expect(row.locator("td.dead-letters")).to_have_text("1 / 1", timeout=30_000)
                # Dead letters of every stage, by stage and reason, filtered in the page.
                await expect(page.locator('#dead-letter-stages tr[data-stage="deliver"] td.total')).to_have_text(
                    "1", timeout=30_000
                )
                letter = page.locator("#dead-letters tbody tr").filter(has_text=REJECTING)
                await expect(letter).to_have_count(1)
                await expect(letter.locator("td.reason")).to_have_text(re.compile(r"^delivery\."))
                status = page.locator("#replay-result")
                for token, refusal in (("", "auth.unauthenticated"), (READ_ONLY_TOKEN, "auth.scope_missing")):
                    await page.fill("#token", token)
                    await row.locator("button.replay").click()
                    await expect(status).to_have_text(f"{REJECTING}: replay refused ({refusal})")
                assert fixed_receiver.events() == []

                rejecting = False
                await page.fill("#token", REPLAY_TOKEN)
                await row.locator("button.replay").click()
                # The replay reads the dead letters and writes each again: seconds on a loaded machine.
                await expect(status).to_have_text(f"{REJECTING}: replayed 1 of 1 dead letters", timeout=30_000)
                await ops_bus.wait_for(
                    fixed_receiver, lambda: len(fixed_receiver.events()) == 1, 30, "the replayed event"
                )
                await expect(row.locator("td.dead-letters")).to_have_text("0 / 1", timeout=30_000)

                await page.fill("#event-id", "ops-dash-dead-letter")
                await page.click("#trace-form button")
                outcome = page.locator(f'#trace-outcome li[data-subscription="{REJECTING}"]')
                await expect(outcome).to_have_class(re.compile("outcome-delivered"), timeout=20_000)
                steps = page.locator("#trace-timeline li")
                await expect(steps.filter(has_text="dead-lettered at stage deliver")).to_have_count(1)
                await expect(steps.filter(has_text="replayed from dead letter")).to_have_count(1)
                await expect(steps.last).to_contain_text("delivered")
                await page.screenshot(path=str(tmp_path / "dashboard-wide.png"), full_page=True)

                narrow = await browser.new_page(viewport={"width": 390, "height": 844})
                await narrow.goto(f"{ops_bus.web_url}/dashboard")  # the token stays with the tab it was typed in
                await narrow.fill("#token", REPLAY_TOKEN)
                await narrow.wait_for_function(
                    """() => document.querySelector('#chart-throughput polyline[data-series="route"]')""",
                    timeout=20_000,
                )
                width = await narrow.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
                assert width[0] <= width[1], f"the page scrolls sideways on a narrow screen: {width}"
                await narrow.screenshot(path=str(tmp_path / "dashboard-narrow.png"), full_page=True)

                # Health counts the dead letters of every stage: one source dead letter passes the
                # limit of 0 set for this bus (a delivery-only count stayed HEALTHY: issue 18).
                source = DeadLetter("wire.not_avro", "not Avro", "source", topic=ops_bus.topic("ingest"))
                await ops_bus.producer.send_and_wait(
                    ops_bus.topic("deadletter"), b"sealed", key=b"k", headers=source.headers()
                )
                await expect(page.locator("#health")).to_have_text("UNHEALTHY", timeout=30_000)
                assert "source dead letters" in await page.locator("#health").get_attribute("title")
                await expect(page.locator("#dead-letter-problems li")).to_have_count(1)
                # The filters, now that two stages and two reasons are listed.
                rows = page.locator("#dead-letters tbody tr")
                await expect(rows).to_have_count(2)
                await page.select_option("#filter-stage", "source")
                await expect(rows).to_have_count(1)
                await expect(rows.locator("td.reason")).to_have_text("wire.not_avro")
                await expect(rows.locator("button.replay")).to_have_count(0)  # only a delivery's is replayed
                await page.select_option("#filter-stage", "")
                await page.select_option("#filter-reason", "delivery.rejected")
                await expect(rows).to_have_count(1)
                await expect(rows.first).to_contain_text(REJECTING)
            finally:
                await browser.close()
    finally:
        if flow is not None:
            flow.cancel()
        for receiver in (flow_receiver, fixed_receiver):
            await receiver.stop()

    assert fixed_receiver.events()[0].webhook_id == dead["idempotency_key"]


async def test_one_dead_letter_is_replayed_by_its_id_and_only_with_the_replay_scope(ops_bus):
    """POST /api/dead-letters/{id}/replay: the id `samband dlq` and the dashboard's list use."""
    replay_token, read_only = (
        {"Authorization": f"Bearer {REPLAY_TOKEN}"},
        {"Authorization": f"Bearer {READ_ONLY_TOKEN}"},
    )
    receiver = Receiver(ops_bus.secret, lambda _n, e: Reply(400) if e["type"] != VALIDATION_TYPE else Reply())
    await receiver.start()
    try:
        await ops_bus.subscribe("ops-dash-one", receiver.url, **FAST)
        await ops_bus.send([delivery("ops-dash-one", "e" * 32, "ops-dash-one-letter")])
        async with aiohttp.ClientSession(ops_bus.web_url) as http:
            letter = None
            async with asyncio.timeout(60):
                while letter is None:
                    async with http.get("/api/overview", headers=replay_token) as response:
                        recent = (await response.json()).get("dead_letters", {}).get("recent", [])
                    letter = next((d for d in recent if d["subscription"] == "ops-dash-one"), None)
                    await asyncio.sleep(0.5)  # the sampler's pace, inside a deadline
            async with http.post(f"/api/dead-letters/{letter['id']}/replay", headers=read_only) as response:
                assert response.status == 403
            for wrong in ("abc", "1:2:3", "99:99999"):
                async with http.post(f"/api/dead-letters/{wrong}/replay", headers=replay_token) as response:
                    assert response.status == 404 and (await response.json())["error"] == "dead_letter.not_found"
            async with http.post(f"/api/dead-letters/{letter['id']}/replay", headers=replay_token) as response:
                assert response.status == 200
                assert await response.json() == {"dead_letter": letter["id"], "replayed": 1, "said": []}
        await ops_bus.wait_for(receiver, lambda: len(receiver.received) >= 3, 60, "the replayed event tried again")
    finally:
        await receiver.stop()
