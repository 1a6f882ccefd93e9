"""Pictures of the dashboard during a demo run (`samband demo --dashboard-pictures DIR`, which
`make dashboard-pictures` runs for docs/operations.md): wide and narrow, the charts drawn from
the run's own history, and one event of the system that had an outage traced as a timeline.

Needs Playwright (in the `test` extra) and Debian's chromium, which it drives headless.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

# Debian's chromium, headless: the dashboard's browser test drives it the same way.
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SIZES = {"wide": {"width": 1400, "height": 1000}, "narrow": {"width": 390, "height": 844}}


class PicturesError(Exception):
    """The pictures cannot be taken: says what is missing."""


async def take_pictures(url: str, token: str, event_id: str | None, folder: Path) -> list[Path]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        raise PicturesError("Playwright is missing: `make install` installs it (pip install -e '.[test]')") from None
    if not await asyncio.to_thread(CHROMIUM.exists):
        raise PicturesError("Debian's chromium is missing: apt-get install chromium")
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    taken = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            for name, viewport in SIZES.items():
                page = await browser.new_page(viewport=viewport)
                await page.goto(f"{url}/dashboard")
                await page.fill("#token", token)
                await page.wait_for_function(
                    """() => document.querySelectorAll('#chart-throughput polyline').length > 0
                        && document.querySelectorAll('#subscriptions tbody tr').length > 0""",
                    timeout=30_000,
                )
                if event_id:
                    await page.fill("#event-id", event_id)
                    await page.click("#trace-form button")
                    await page.wait_for_selector("#trace-timeline li", timeout=30_000)
                path = folder / f"dashboard-{name}.png"
                await page.screenshot(path=str(path), full_page=True)
                taken.append(path)
        finally:
            await browser.close()
    return taken
