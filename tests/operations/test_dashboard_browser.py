"""The operations dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright):
the page loads, its numbers change while events flow, replay needs a dlq:replay token and brings a
dead-lettered event to the (fixed) receiver with its original webhook-id, and the trace search
finds an event. Saves a screenshot in the test's own folder; to refresh the one in the docs, run it
with SAMBAND_DASHBOARD_SCREENSHOT=docs/dashboard.png (tests never write into the source tree unasked)."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from pathlib import Path

import pytest
from delivery_fixtures import delivery
from ops_bus import READ_ONLY_TOKEN, REPLAY_TOKEN
from playwright.async_api import async_playwright, expect
from webhook_receiver import VALIDATION_TYPE, Receiver, Reply

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FLOW, REJECTING = "ops-dash-flow", "ops-dash-rejecting"
FAST = {"retry_schedule": [0.2, 0.2], "read_timeout": 1.0, "connect_timeout": 0.5}


@pytest.fixture(autouse=True)
def _chromium_installed():
    # A missing browser fails the test rather than skipping it: the dashboard must be proven.
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: `make test` installs it (apt-get install chromium)")


async def _keep_sending(bus) -> None:
    for n in itertools.count():
        await bus.send([delivery(FLOW, f"{n % 4:032x}", f"ops-dash-{n}", n // 4)])
        await asyncio.sleep(0.2)  # the pace of the flow, not a wait for an outcome


async def test_dashboard_shows_live_numbers_replays_dead_letters_and_traces(ops_bus, tmp_path):
    screenshot = Path(os.environ.get("SAMBAND_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
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

                row = page.locator(f'#subscriptions tr[data-subscription="{REJECTING}"]')
                await expect(row.locator("td.dead-letters")).to_have_text("1 / 1", timeout=30_000)
                status = page.locator("#replay-result")
                for token, refusal in (("", "auth.unauthenticated"), (READ_ONLY_TOKEN, "auth.scope_missing")):
                    await page.fill("#token", token)
                    await row.locator("button.replay").click()
                    await expect(status).to_have_text(f"{REJECTING}: replay refused ({refusal})")
                assert fixed_receiver.events() == []

                rejecting = False
                await page.fill("#token", REPLAY_TOKEN)
                await row.locator("button.replay").click()
                await expect(status).to_have_text(f"{REJECTING}: replayed 1 of 1 dead letters")
                await ops_bus.wait_for(
                    fixed_receiver, lambda: len(fixed_receiver.events()) == 1, 30, "the replayed event"
                )
                await expect(row.locator("td.dead-letters")).to_have_text("0 / 1", timeout=30_000)

                await page.fill("#event-id", "ops-dash-dead-letter")
                await page.click("#trace-form button")
                await expect(page.locator("#trace")).to_contain_text('"status": "delivered"', timeout=20_000)
                await page.screenshot(path=str(screenshot), full_page=True)
            finally:
                await browser.close()
    finally:
        if flow is not None:
            flow.cancel()
        for receiver in (flow_receiver, fixed_receiver):
            await receiver.stop()

    assert fixed_receiver.events()[0].webhook_id == dead["idempotency_key"]
