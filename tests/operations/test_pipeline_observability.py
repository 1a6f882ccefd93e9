"""The pipeline's observability wiring in a real worker: the W3C trace id given at ingest reaches the
webhook, the delivery log lines carry event id, subscription, topic, partition, offset and trace id,
and /metrics counts the deliveries by subscription and outcome."""

from __future__ import annotations

import json

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from agents import tracing
from ops_bus import full_subscription
from routing_events import encode, event, synthetic_number
from webhook_receiver import VALIDATION_TYPE, Receiver, Reply

SUB = "ops-observed"
FAST = {"retry_schedule": [0.2, 0.2], "read_timeout": 1.0, "connect_timeout": 0.5}


def _refuse_once():
    refused: list[str] = []

    def behaviour(_n, ev) -> Reply:
        if ev["type"] != VALIDATION_TYPE and not refused:
            refused.append(ev["id"])
            return Reply(503)
        return Reply()

    return behaviour


def _samples(text: str, name: str) -> dict[tuple, float]:
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples if s.name == name}


async def test_trace_context_logs_and_metrics_follow_a_delivery(ops_bus):
    receiver = Receiver(ops_bus.secret, _refuse_once())
    await receiver.start()
    try:
        value = full_subscription(SUB, receiver.url, ["4601"], ["Death"], {"Death": ["deathDate"]}, **FAST)
        await ops_bus.producer.send_and_wait(ops_bus.topic("subscriptions"), json.dumps(value).encode(), key=SUB.encode())
        await ops_bus.wait_for(receiver, receiver.verified, 60, "verified")
        death = event("Death", synthetic_number(9, 9, 62, 400), ["4601"])
        event_id = death["envelope"]["id"]
        trace = tracing.new_trace()
        await ops_bus.producer.send_and_wait(ops_bus.topic("ingest"), encode(death), key=event_id.encode(),
                                             headers=tracing.with_kafka_header([], trace))
        await ops_bus.wait_for(receiver, lambda: len(receiver.events()) == 1, 60, "the event delivered")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{ops_bus.web_url}/metrics") as response:
                exposition = await response.text()
    finally:
        await receiver.stop()

    arrived = tracing.from_http_headers(receiver.events()[0].headers)
    assert arrived is not None and arrived.trace_id == trace.trace_id

    deliveries = _samples(exposition, "samband_deliveries_total")
    assert deliveries[(("outcome", "retry"), ("subscription", SUB))] == 1
    assert deliveries[(("outcome", "delivered"), ("subscription", SUB))] == 1

    lines = [json.loads(line) for line in ops_bus.worker.log_path.read_text().splitlines() if line.startswith("{")]
    [retry] = [line for line in lines if line.get("event") == "delivery.retry" and line.get("subscription") == SUB]
    assert retry["event_id"] == event_id and retry["trace_id"] == trace.trace_id
    assert retry["topic"] == ops_bus.topic("deliveries") and str(retry["partition"]).isdigit() and str(retry["offset"]).isdigit()
