"""Reading the metrics never holds the worker's event loop for long: the dashboard's sample reads
the totals kept as deliveries are recorded (not the scrape's text of every subscription's series),
and a /metrics scrape makes its text in pieces, each in a thread. At 5,000 subscriptions, walking
prometheus_client's labelled families took 0.64 s a sample on the loop (docs/operations.md,
"Event-loop lag")."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from agents import metrics
from agents.web.history import History
from agents.web.operations import add_routes
from bus.inspector import KafkaInspector


def _summed_buckets() -> list[tuple[float, float]]:
    """The latency histogram's buckets summed over its subscriptions, the slow way (a scrape's)."""
    totals: dict[float, float] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name == "samband_end_to_end_latency_seconds_bucket":
                totals[float(sample.labels["le"])] = totals.get(float(sample.labels["le"]), 0.0) + sample.value
    return sorted(totals.items())


def test_the_kept_totals_are_the_labelled_series_summed():
    subs = [f"sub-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for i, seconds in enumerate([0.0, 0.05, 0.0500001, 1, 86_400, 10**7, 0.3]):  # bounds, between, beyond
        metrics.observe_end_to_end_latency(subs[i % 3], seconds)
    for outcome in ("delivered", "delivered", "retry", "dead_lettered"):
        metrics.delivery(subs[0], outcome)

    assert metrics.latency_buckets() == _summed_buckets()
    assert metrics.attempts()[subs[0]] == {"delivered": 2, "failed": 2}


async def test_the_dashboards_sample_does_not_make_the_scrapes_text(kafka_bootstrap, monkeypatch):
    history = History(f"samband-{uuid.uuid4().hex[:8]}")
    sub = f"sub-{uuid.uuid4().hex[:8]}"

    def written():
        raise AssertionError("the sample wrote every subscription's series out")

    monkeypatch.setattr(metrics, "_subscription_text", written)
    metrics.observe_end_to_end_latency(sub, 0.3)
    metrics.delivery(sub, "delivered")
    async with KafkaInspector(kafka_bootstrap) as kafka:
        sample = await history.take(kafka)
    assert sample.subscriptions[sub] == {"delivered": 1, "failed": 0}
    assert sample.latency_ms["p50"] is not None and 250 <= sample.latency_ms["p50"] <= 500


async def test_a_scrape_leaves_the_loop_free_while_its_text_is_built(kafka_bootstrap, monkeypatch):
    pieces = metrics.exposition_pieces

    def slow_pieces():  # the text of many subscriptions takes this long to write out
        for piece in pieces():
            time.sleep(0.1)
            yield piece

    monkeypatch.setattr(metrics, "exposition_pieces", slow_pieces)
    web_app = web.Application()
    add_routes(web_app, kafka_bootstrap, ready_max_lag=0, batch_consumers=list)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)  # the loop's pace while the scrape runs, counted
            ticks += 1

    async with TestClient(TestServer(web_app)) as client:
        ticker = asyncio.ensure_future(tick())
        try:
            response = await client.get("/metrics")
            assert response.status == 200
            text = await response.text()
            scraped_with = ticks
            assert "samband_deliveries_total" in text
        finally:
            ticker.cancel()
    assert scraped_with >= 5, f"the loop ran {scraped_with} times in the 0.7 s or more the text took"
