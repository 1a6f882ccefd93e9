"""HTTP ingest against the real broker: what is accepted lands on samband-ingest, what is refused does not."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
from http_ingest_client import auth, binary, cloudevent, ingest_config, running_ingest, set_tokens
from kafka_io import event_id, read_to_end
from support import open_dead_letter, pseudonym_key

from bus.topics import TopicNames, topic_names
from connectors.dead_letters import DeadLetter
from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.examples import PERSON
from schemas.identity import control_digits
from schemas.ingest_key import IngestKey
from schemas.registry import CatalogRegistry

pytestmark = pytest.mark.kafka

STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}


def _bad_checksum_person() -> str:
    first9 = "150385912"  # 15 March (85 = 3 + 80, synthetic), individual number 912
    digits = control_digits(first9)
    assert digits is not None
    return first9 + digits[0] + str((int(digits[1]) + 1) % 10)


def _topics(app_id: str) -> TopicNames:
    return topic_names(app_id)


def _decode(value: bytes) -> dict:
    return Codec(CatalogRegistry(catalog())).decode(value)


async def test_a_structured_event_is_on_the_ingest_topic_when_202_is_answered(
    ingest, connector_kafka, connector_app_id
):
    event = cloudevent("Move")
    async with ingest.post("/events", json=event, headers={**STRUCTURED, **auth()}) as response:
        assert response.status == 202, await response.text()
        assert (await response.json()) == {"accepted": [event["id"]]}
    # Read right after the 202, without waiting: acks=all means it is already there.
    records = await read_to_end(connector_kafka, _topics(connector_app_id).ingest)
    assert [event_id(r) for r in records] == [event["id"]]
    assert records[0].key == IngestKey(pseudonym_key()).of(records[0].value)  # the person's pseudonym: order per person
    record = _decode(records[0].value)
    assert record["envelope"]["person"] == PERSON and record["newAddress"]["kommunenummer"] == "4601"
    assert dict(records[0].headers)["samband-http-system"] == b"bergen-barnevern"


async def test_a_batch_puts_every_event_on_the_ingest_topic(ingest, connector_kafka, connector_app_id):
    events = [cloudevent("Move"), cloudevent("Birth"), cloudevent("Move")]
    async with ingest.post("/events", data=json.dumps(events), headers={**BATCH, **auth()}) as response:
        assert response.status == 202, await response.text()
    records = await read_to_end(connector_kafka, _topics(connector_app_id).ingest)
    assert [event_id(r) for r in records] == [e["id"] for e in events]


async def test_binary_mode_gives_the_same_value_as_structured_mode(ingest, connector_kafka, connector_app_id):
    event = cloudevent("Move")
    headers, data = binary(event)
    async with ingest.post("/events", json=data, headers={**headers, **auth()}) as response:
        assert response.status == 202, await response.text()
    async with ingest.post("/events", json=event, headers={**STRUCTURED, **auth()}) as response:
        assert response.status == 202
    binary_record, structured_record = await read_to_end(connector_kafka, _topics(connector_app_id).ingest)
    assert binary_record.key == structured_record.key == IngestKey(pseudonym_key()).of(structured_record.value)
    assert binary_record.value == structured_record.value


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not-a-known-token-at-all"}, {"Authorization": "Basic eDp5"}]
)
async def test_a_post_without_a_known_token_is_401_and_writes_nothing(
    ingest, connector_kafka, connector_app_id, headers
):
    async with ingest.post("/events", json=cloudevent(), headers={**STRUCTURED, **headers}) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await response.json())["errors"][0]["code"] == "auth.token"
    assert await read_to_end(connector_kafka, _topics(connector_app_id).ingest) == []


async def test_an_ungranted_event_type_is_403_and_no_event_of_the_batch_is_written(
    ingest, connector_kafka, connector_app_id
):
    events = [cloudevent("Move"), cloudevent("Death")]  # bergen-barnevern is granted Move and Birth only
    async with ingest.post(
        "/events", data=json.dumps(events), headers={**BATCH, **auth("bergen-barnevern")}
    ) as response:
        assert response.status == 403
        errors = (await response.json())["errors"]
    assert errors == [{"code": "auth.type_not_granted", "field": "type", "index": 1,
                       "message": "bergen-barnevern may not publish Death"}]  # fmt: skip
    assert await read_to_end(connector_kafka, _topics(connector_app_id).ingest) == []
    async with ingest.post("/events", json=events[1], headers={**STRUCTURED, **auth("oslo-skole")}) as response:
        assert response.status == 202  # the system granted Death may publish it


async def test_an_invalid_event_is_400_with_reason_codes_dead_lettered_and_nothing_personal_echoed(
    ingest, connector_kafka, connector_app_id
):
    bad = cloudevent("Move", person=_bad_checksum_person(), kommunenummer=["0301", "9999"])
    events = [cloudevent("Move"), bad]
    async with ingest.post("/events", data=json.dumps(events), headers={**BATCH, **auth()}) as response:
        assert response.status == 400
        text = await response.text()
    errors = json.loads(text)["errors"]
    assert {(e["code"], e["field"], e["index"]) for e in errors} == {
        ("identity.checksum", "person", 1),  # the attribute as the client wrote it
        ("kommune.unknown", "kommunenummer", 1),
        ("relation.kommune_not_in_envelope", "kommunenummer", 1),
    }
    for personal in (bad["person"], "Testveien", "Prøvegaten", "BERGEN"):
        assert personal not in text
    topics = _topics(connector_app_id)
    assert await read_to_end(connector_kafka, topics.ingest) == [], "a refused batch writes none of its events"
    (dead,) = await read_to_end(connector_kafka, topics.deadletter)
    letter = DeadLetter.from_headers(dead.headers)
    assert (dead.key.decode(), letter.reason, letter.stage) == (bad["id"], "identity.checksum", "source")
    assert bad["person"] not in letter.message and json.loads(open_dead_letter(dead.value)) == bad


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"specversion": "0.3"}, "cloudevent.invalid", "specversion"),
        ({"type": "no.samband.events.Nonsense"}, "event.unknown_type", "type"),
        ({"time": "yesterday"}, "json.field_type", "time"),
        ({"data": {"movedDate": "2024-03-01"}}, "json.missing_field", "scope"),
    ],
)
async def test_schema_errors_name_their_code_and_field(ingest, change, code, field):
    async with ingest.post("/events", json=cloudevent("Move", **change), headers={**STRUCTURED, **auth()}) as response:
        assert response.status == 400
        assert (await response.json())["errors"][0] | {"message": ""} == {"code": code, "field": field, "message": ""}


async def test_the_openapi_document_describes_the_endpoint(ingest):
    async with ingest.get("/openapi.json") as response:
        document = await response.json()
    operation = document["paths"]["/events"]["post"]
    assert set(operation["requestBody"]["content"]) == {
        "application/cloudevents+json", "application/cloudevents-batch+json", "application/json"}  # fmt: skip
    assert {"202", "400", "401", "403", "503"} <= set(operation["responses"])


async def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    connector_kafka, connector_app_id, monkeypatch, tmp_path
):
    """Every answer is one the OpenAPI document declares: its status, content type and body schema."""
    set_tokens(monkeypatch)
    async with running_ingest(connector_kafka, connector_app_id, ingest_config()) as source:
        base = f"http://127.0.0.1:{source.port}"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json",
            "--checks", "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
            "--max-examples", "50", "--seed", "6",
            "--header", f"Authorization: {auth('every-type')['Authorization']}", "--report-dir", str(tmp_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(process.communicate(), 300)  # 50 examples a route; slow on a busy machine
    assert process.returncode == 0, output.decode()[-4000:]
