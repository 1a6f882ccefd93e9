"""The pipeline's observability wiring in a real worker: the W3C trace id given at ingest reaches the
webhook, ingest starts a trace when none is given and routing continues it with its own span, the
log lines carry event id, (subscription,) topic, partition, offset and trace id, and /metrics counts
records in and out per topic, validation failures by reason, deliveries by subscription and
outcome, and the end-to-end latency."""

from __future__ import annotations

import asyncio
import json
import re
import time

import aiohttp
from kafka_io import read_to_end
from ops_bus import full_subscription
from prometheus_client.parser import text_string_to_metric_families
from routing_events import encode, event, synthetic_number
from webhook_receiver import Receiver, refuse_first_event

from agents import tracing
from connectors.dead_letters import DeadLetter

SUB = "ops-observed"
FAST = {"retry_schedule": [1, 1], "read_timeout": 1.0, "connect_timeout": 0.5}


def _samples(text: str, name: str) -> dict[tuple, float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def test_trace_context_logs_and_metrics_follow_a_delivery(ops_bus):
    receiver = Receiver(ops_bus.secret, refuse_first_event())
    await receiver.start()
    try:
        value = full_subscription(SUB, receiver.url, ["4601"], ["Death"], {"Death": ["deathDate"]}, **FAST)
        await ops_bus.put_subscription(value)
        await ops_bus.wait_for(receiver, receiver.verified, 60, "verified")
        death = event("Death", synthetic_number(9, 9, 62, 400), ["4601"])
        event_id = death["envelope"]["id"]
        trace = tracing.new_trace()
        await ops_bus.producer.send_and_wait(
            ops_bus.topic("ingest"), encode(death), key=event_id.encode(), headers=tracing.with_kafka_header([], trace)
        )
        await ops_bus.wait_for(receiver, lambda: len(receiver.events()) == 1, 60, "the event delivered")
        async with aiohttp.ClientSession() as http, http.get(f"{ops_bus.web_url}/metrics") as response:
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
    assert (
        retry["topic"] == ops_bus.topic("deliveries")
        and str(retry["partition"]).isdigit()
        and str(retry["offset"]).isdigit()
    )


async def _metrics_until(url: str, condition, timeout: float, what: str) -> str:
    """/metrics polled until `condition(exposition)` holds (the counters move just after the records are acknowledged)."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{url}/metrics") as response:
                text = await response.text()
            if condition(text):
                return text
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{what}: not within {timeout} s")
            await asyncio.sleep(0.2)  # poll interval inside the deadline


def _sample(text: str, name: str, **labels) -> float:
    return _samples(text, name).get(tuple(sorted(labels.items())), 0.0)


def _header(record, name: str) -> bytes | None:
    values = [value for key, value in record.headers if key == name]
    return values[0] if len(values) == 1 else None


async def test_ingest_starts_a_trace_routing_continues_it_and_both_stages_count_and_log(ops_bus):
    sub = "ops-traced"
    receiver = Receiver(ops_bus.secret)
    await receiver.start()
    topic = ops_bus.topic
    async with aiohttp.ClientSession() as http, http.get(f"{ops_bus.web_url}/metrics") as response:
        before = await response.text()
    try:
        value = full_subscription(sub, receiver.url, ["5001"], ["Death"], {"Death": ["deathDate"]}, **FAST)
        await ops_bus.put_subscription(value)
        await ops_bus.wait_for(receiver, receiver.verified, 60, "verified")
        death = event("Death", synthetic_number(11, 3, 58, 300), ["5001"])
        refused = event("Death", synthetic_number(12, 3, 58, 300), ["9999"])  # no such kommune: kommune.unknown
        sent_at = time.time()
        for record in (death, refused):  # no traceparent: ingest starts the trace
            await ops_bus.producer.send_and_wait(topic("ingest"), encode(record), key=record["envelope"]["id"].encode())
        await ops_bus.wait_for(receiver, lambda: len(receiver.events()) == 1, 60, "the event delivered")

        def counted(text: str) -> bool:
            def grew(name, **labels):
                return _sample(text, name, **labels) - _sample(before, name, **labels)

            return (
                grew("samband_events_in_total", topic=topic("ingest")) >= 2
                and grew("samband_events_out_total", topic=topic("deadletter")) >= 1
                and grew("samband_validation_failures_total", reason="kommune.unknown") == 1
                and _sample(text, "samband_end_to_end_latency_seconds_count", subscription=sub) == 1
            )

        after = await _metrics_until(ops_bus.web_url, counted, 30, "stage counters and latency")
        events = await read_to_end(ops_bus.bootstrap, topic("events"))
        deliveries = await read_to_end(ops_bus.bootstrap, topic("deliveries"))
    finally:
        await receiver.stop()

    [delivery] = [r for r in deliveries if json.loads(r.value)["event"]["id"] == death["envelope"]["id"]]
    routed = tracing.from_kafka_headers(delivery.headers)
    assert routed is not None
    [ingested] = [r for r in events if (t := tracing.from_kafka_headers(r.headers)) and t.trace_id == routed.trace_id]
    ingest_span = tracing.from_kafka_headers(ingested.headers)
    assert ingest_span.parent_id != routed.parent_id  # the router's own span, child of ingest's
    ingested_at = float(_header(delivery, "samband-ingested-at"))
    assert sent_at - 1 <= ingested_at <= time.time()
    assert _header(ingested, "samband-ingested-at") == _header(delivery, "samband-ingested-at")
    arrived = tracing.from_http_headers(receiver.events()[0].headers)
    assert arrived.trace_id == routed.trace_id

    def grew(name, **labels):
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    assert grew("samband_events_out_total", topic=topic("events")) >= 1
    assert grew("samband_events_in_total", topic=topic("events")) >= 1
    assert grew("samband_events_out_total", topic=topic("deliveries")) >= 1
    latency = _sample(after, "samband_end_to_end_latency_seconds_sum", subscription=sub)
    assert 0 < latency <= time.time() - sent_at

    lines = [json.loads(line) for line in ops_bus.worker.log_path.read_text().splitlines() if line.startswith("{")]
    [dead] = [
        line
        for line in lines
        if line.get("event") == "dead_letter" and line.get("event_id") == refused["envelope"]["id"]
    ]
    assert dead["reason"] == "kommune.unknown" and dead["topic"] == topic("ingest")
    assert str(dead["partition"]).isdigit() and str(dead["offset"]).isdigit()
    assert re.fullmatch(r"[0-9a-f]{32}", dead["trace_id"])
    [letter] = [
        r
        for r in await read_to_end(ops_bus.bootstrap, topic("deadletter"))
        if (d := DeadLetter.from_headers(r.headers)).topic == topic("ingest")
        and (d.partition, d.offset) == (int(dead["partition"]), int(dead["offset"]))
    ]
    assert tracing.from_kafka_headers(letter.headers).trace_id == dead["trace_id"]  # the trace ingest started
