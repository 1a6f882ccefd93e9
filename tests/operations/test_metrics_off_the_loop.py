"""Reading the metrics never holds the worker's event loop for long: the dashboard's sample reads
the totals kept as deliveries are recorded (not the scrape's text of every subscription's series),
and a /metrics scrape makes its text in pieces, each in a thread. At 5,000 subscriptions, walking
prometheus_client's labelled families took 0.64 s a sample on the loop (docs/operations.md,
"Event-loop lag")."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from support import until

from agents import metrics
from agents.web import operations as operations_module
from agents.web.history import History
from agents.web.operations import OPERATIONS_KEY, add_routes
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


async def test_a_scraper_that_stops_reading_holds_back_no_other_scrape_and_is_cut_off(kafka_bootstrap, monkeypatch):
    """Found by a hostile review: with the text sent in pieces under the one-scrape-at-a-time lock,
    a client that sent GET /metrics and never read held every later scrape of the worker for good
    (/metrics needs no token). Now the lock covers only the lag's refresh, a scrape not read within
    SCRAPE_SECONDS is cut off, and at most SCRAPES_AT_ONCE are sent at a time."""
    monkeypatch.setattr(operations_module, "SCRAPE_SECONDS", 2.0)
    monkeypatch.setattr(operations_module, "SCRAPES_AT_ONCE", 1)
    for n in range(6000):  # about 9 MB of text: more than the sockets' buffers take in
        sub = f"slow-{n:04d}-{uuid.uuid4().hex[:6]}"
        metrics.delivery(sub, "delivered")
        metrics.observe_end_to_end_latency(sub, 0.2)
    web_app = web.Application()
    add_routes(web_app, kafka_bootstrap, ready_max_lag=0, batch_consumers=list)
    operations = web_app[OPERATIONS_KEY]
    async with TestServer(web_app, host="127.0.0.1") as server:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect((server.host, server.port))
        stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # and never reads
        try:
            await until(lambda: operations.scrapes_sent == 1, 10, what="the stalled scrape being sent")
            async with TestClient(server) as client:
                busy = await asyncio.wait_for(
                    client.get("/metrics"), 10
                )  # one scrape at a time here: the next is refused at once
                assert busy.status == 503
                # The stalled one is cut off after SCRAPE_SECONDS; then a scrape is sent whole.
                await until(lambda: operations.scrapes_sent == 0, 10, what="the stalled scrape cut off")
                response = await asyncio.wait_for(client.get("/metrics"), 10)
                assert response.status == 200
                text = await asyncio.wait_for(response.text(), 10)
                assert text.count("samband_end_to_end_latency_seconds_count{") >= 6000
        finally:
            stalled.close()
