"""agents.metrics: label values of personal-data shape are refused; /metrics parses with prometheus-client's parser."""

from __future__ import annotations

import tracemalloc
import uuid

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from agents import metrics
from agents.web.operations import add_routes

IDENTITY_NUMBER = "01817012309"  # synthetic (month + 80), valid control digits


@pytest.mark.parametrize(
    "record",
    [
        lambda: metrics.delivery(f"oslo-{IDENTITY_NUMBER}", "delivered"),
        lambda: metrics.event_in(f"samband-{IDENTITY_NUMBER}"),
        lambda: metrics.validation_failed(f"identity.{IDENTITY_NUMBER}"),
        lambda: metrics.set_retry_backlog(IDENTITY_NUMBER, 1),
        lambda: metrics.set_delivery_memory(f"k{IDENTITY_NUMBER}", 1, 0),
        lambda: metrics.backlog_expired(IDENTITY_NUMBER),
        lambda: metrics.observe_end_to_end_latency(IDENTITY_NUMBER, 1.0),
        lambda: metrics.set_consumer_lag("samband", IDENTITY_NUMBER, 0, 1),
    ],
)
def test_label_holding_an_identity_number_is_refused_without_echoing_it(record):
    with pytest.raises(metrics.LabelValueError) as refused:
        record()
    assert IDENTITY_NUMBER not in str(refused.value)
    assert IDENTITY_NUMBER.encode() not in metrics.exposition()  # nor kept for the next scrape


@pytest.mark.parametrize(
    "record",
    [
        lambda: metrics.validation_failed("Kari Nordmann"),
        lambda: metrics.delivery("Bergen Helsestasjon", "delivered"),
        lambda: metrics.delivery("bergen-helsestasjon", "maybe"),
        lambda: metrics.event_out("topic with spaces"),
        lambda: metrics.set_retry_backlog("", 1),
    ],
)
def test_label_outside_its_allowed_shape_is_refused(record):
    with pytest.raises(metrics.LabelValueError):
        record()


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_endpoint_serves_recorded_values_in_parseable_text_format(kafka_bootstrap):
    topic = f"samband-{uuid.uuid4().hex[:8]}-events"
    subscription = f"sub-{uuid.uuid4().hex[:8]}"
    metrics.event_in(topic, 3)
    metrics.event_out(topic)
    metrics.validation_failed("identity.checksum")
    metrics.delivery(subscription, "delivered")
    metrics.delivery(subscription, "delivered")
    metrics.delivery(subscription, "retry")
    metrics.set_retry_backlog(subscription, 7)
    metrics.set_delivery_memory(subscription, 40, 2)
    metrics.backlog_expired(subscription)
    metrics.observe_end_to_end_latency(subscription, 0.3)
    metrics.observe_end_to_end_latency(subscription, 0.05)

    web_app = web.Application()
    add_routes(web_app, kafka_bootstrap, ready_max_lag=0, batch_consumers=list)
    async with TestClient(TestServer(web_app)) as client:
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        samples = _samples(await response.text())

    assert samples[("samband_events_in_total", (("topic", topic),))] == 3
    assert samples[("samband_events_out_total", (("topic", topic),))] == 1
    assert samples[("samband_validation_failures_total", (("reason", "identity.checksum"),))] >= 1
    assert samples[("samband_deliveries_total", (("outcome", "delivered"), ("subscription", subscription)))] == 2
    assert samples[("samband_deliveries_total", (("outcome", "retry"), ("subscription", subscription)))] == 1
    assert samples[("samband_retry_backlog", (("subscription", subscription),))] == 7
    assert samples[("samband_delivery_in_memory", (("subscription", subscription),))] == 40
    assert samples[("samband_delivery_left_in_topic", (("subscription", subscription),))] == 2
    assert samples[("samband_delivery_backlog_expired_total", (("subscription", subscription),))] == 1
    assert samples[("samband_end_to_end_latency_seconds_count", (("subscription", subscription),))] == 2
    assert samples[("samband_end_to_end_latency_seconds_sum", (("subscription", subscription),))] == pytest.approx(0.35)
    assert samples[("samband_end_to_end_latency_seconds_bucket", (("le", "0.05"), ("subscription", subscription)))] == 1
    assert samples[("samband_end_to_end_latency_seconds_bucket", (("le", "0.25"), ("subscription", subscription)))] == 1
    assert samples[("samband_end_to_end_latency_seconds_bucket", (("le", "0.5"), ("subscription", subscription)))] == 2
    assert samples[("samband_end_to_end_latency_seconds_bucket", (("le", "+Inf"), ("subscription", subscription)))] == 2


def test_a_subscriptions_series_cost_under_a_kilobyte_of_the_worker():
    """A national worker records deliveries for up to 18,000 subscriptions: at prometheus_client's
    labelled children (a lock and an object per histogram bucket) that was about 7 KB each, over
    100 MiB of each worker process (docs/national-scale.md, "Where the memory goes")."""
    subs = [f"k{n:04d}-{uuid.uuid4().hex[:8]}" for n in range(2000)]
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for sub in subs:  # what the delivery stage records for a subscription that had a delivery
            metrics.delivery(sub, "delivered")
            metrics.observe_end_to_end_latency(sub, 0.2)
            metrics.set_delivery_memory(sub, 1, 0)
            metrics.set_retry_backlog(sub, 0)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not tracing:
            tracemalloc.stop()
    assert grown / len(subs) < 1024, f"{grown / len(subs):,.0f} bytes a subscription"


def test_a_scrape_holds_a_piece_of_its_text_at_a_time_not_the_whole():
    """Built whole, a scrape of 5,000 subscriptions' series held tens of MiB of the worker at once
    (an object per sample, then the text): the peak of a national run's worker was a scrape's."""
    for n in range(5000):
        sub = f"s{n:04d}-{uuid.uuid4().hex[:8]}"
        metrics.delivery(sub, "delivered")
        metrics.observe_end_to_end_latency(sub, 0.2)
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        at_start = tracemalloc.get_traced_memory()[0]
        written = sum(len(piece) for piece in metrics.exposition_pieces())
        held = tracemalloc.get_traced_memory()[1] - at_start
    finally:
        if not tracing:
            tracemalloc.stop()
    assert written > 8 * 2**20  # the whole text
    assert held < 6 * 2**20, f"a scrape held {held / 2**20:.1f} MiB at its peak"
