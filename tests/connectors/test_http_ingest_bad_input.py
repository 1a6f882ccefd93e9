"""Input that gave 500s or slipped through at HTTP ingest (issue 13, finding 12): each is a clear 4xx
in the client's words, and an event that could be read is dead-lettered with its reason code."""

from __future__ import annotations

import base64
import json

import pytest
from http_ingest_client import auth, cloudevent
from kafka_io import read_to_end

from bus.topics import topic_names
from connectors.dead_letters import DeadLetter
from schemas.cloudevents import CloudEventError, record_from_cloudevent

pytestmark = pytest.mark.kafka

STRUCTURED = {"Content-Type": "application/cloudevents+json"}


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,  # the standard library's parser raised RecursionError
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    ],
    ids=["nested-arrays", "nested-objects"],
)
async def test_deeply_nested_json_is_a_400_not_a_server_error(ingest, body):
    async with ingest.post("/events", data=body, headers={**STRUCTURED, **auth()}) as response:
        assert response.status == 400
        assert [e["code"] for e in (await response.json())["errors"]] == ["request.json"]


async def test_a_lone_surrogate_in_the_id_is_a_400_not_a_server_error(ingest, connector_kafka, connector_app_id):
    text = json.dumps(cloudevent("Move", id="PLACEHOLDER")).replace("PLACEHOLDER", "\\ud800")
    async with ingest.post("/events", data=text.encode(), headers={**STRUCTURED, **auth()}) as response:
        assert response.status == 400
        assert [e["code"] for e in (await response.json())["errors"]] == ["request.json"]
    assert await read_to_end(connector_kafka, topic_names(connector_app_id).ingest) == []


@pytest.mark.parametrize("death_date", [1_700_000_000, 12345], ids=["epoch-seconds", "days-since-1970"])
async def test_a_date_given_as_a_number_is_refused_in_the_clients_words_and_dead_lettered(
    ingest, connector_kafka, connector_app_id, death_date
):
    event = cloudevent("Death")
    event["data"]["deathDate"] = death_date
    async with ingest.post("/events", json=event, headers={**STRUCTURED, **auth("oslo-skole")}) as response:
        assert response.status == 400, await response.text()
        errors = (await response.json())["errors"]
    assert [(e["code"], e["field"]) for e in errors] == [("json.field_type", "deathDate")]
    topics = topic_names(connector_app_id)
    assert await read_to_end(connector_kafka, topics.ingest) == []
    (dead,) = await read_to_end(connector_kafka, topics.deadletter)
    assert DeadLetter.from_headers(dead.headers).reason == "json.field_type"


@pytest.mark.parametrize("event_type", ["Death", "Adulthood"])
async def test_a_time_before_year_one_in_utc_is_a_400_not_a_server_error(ingest, connector_kafka, connector_app_id,
                                                                          event_type):  # fmt: skip
    """0001-01-01T02:03:01+03:00 parses, but is no instant in UTC: schemathesis found a 500 there."""
    event = cloudevent(event_type, time="0001-01-01T02:03:01+03:00")
    async with ingest.post("/events", json=event, headers={**STRUCTURED, **auth("every-type")}) as response:
        assert response.status == 400, await response.text()
        errors = (await response.json())["errors"]
    assert [(e["code"], e["field"]) for e in errors] == [("json.field_type", "time")], errors
    assert await read_to_end(connector_kafka, topic_names(connector_app_id).ingest) == []


def test_the_cloudevent_mapping_kafka_ingest_shares_refuses_a_numeric_date():
    event = cloudevent("Death")
    event["data"]["deathDate"] = 12345
    with pytest.raises(CloudEventError) as raised:
        record_from_cloudevent("Death", event)
    assert (raised.value.reason, raised.value.field) == ("json.field_type", "deathDate")


async def test_a_refused_strengt_fortrolig_event_is_dead_lettered_sealed_and_scrubbed(
    ingest, connector_kafka, connector_app_id
):
    """Finding 1: HTTP ingest wrote the submitted JSON to the dead letters as it came."""
    from support import open_dead_letter

    from connectors.dead_letters import DeadLetterSeal
    from schemas.examples import PERSON

    event = cloudevent("Move", addressprotection="strengtFortrolig")
    event["data"]["movedDate"] = 20240301  # refused: json.field_type
    street = event["data"]["newAddress"]["streetName"]
    async with ingest.post("/events", json=event, headers={**STRUCTURED, **auth()}) as response:
        assert response.status == 400
    (dead,) = await read_to_end(connector_kafka, topic_names(connector_app_id).deadletter)
    raw = dead.value + b"".join(v for _, v in dead.headers)
    assert dead.value.startswith(DeadLetterSeal.SEALED)
    assert street.encode() not in raw and PERSON.encode() not in raw
    letter = DeadLetter.from_headers(dead.headers)
    assert (letter.reason, letter.scrubbed, letter.event_id) == ("json.field_type", "address", event["id"])
    opened = json.loads(open_dead_letter(dead.value))
    assert street not in json.dumps(opened, ensure_ascii=False) and "kommunenummer" not in opened


def _with_data(event_type: str, **fields) -> dict:
    event = cloudevent(event_type)
    event["data"].update(fields)
    return event


def _base64(event_type: str) -> dict:
    event = cloudevent(event_type)
    event["data_base64"] = base64.b64encode(json.dumps(event.pop("data")).encode()).decode()
    return event


def _with_address(**fields) -> dict:
    event = cloudevent("Move")
    event["data"]["newAddress"].update(fields)
    return event


@pytest.mark.parametrize(
    ("event", "code", "field"),
    [
        (cloudevent("Death", sequencenumber="seven"), "json.field_type", "sequencenumber"),  # was the Avro path
        (cloudevent("Death", kommunenummer=[]), "kommune.missing", "kommunenummer"),  # was accepted
        (cloudevent("Birth", kommunenummer=[]), "kommune.missing", "kommunenummer"),
        (cloudevent("Move", kommunenummer=[]), "kommune.missing", "kommunenummer"),
        (cloudevent("Death", kommunenumber=["0301"]), "cloudevent.unknown_attribute", "kommunenumber"),  # was dropped
        (_with_data("Death", deathdate="2024-03-01"), "data.unknown_field", "deathdate"),  # was dropped
        ({"hello": "world"}, "cloudevent.invalid", "specversion"),  # was event.unknown_type
        (_with_address(Hemmeligveien="3"), "data.unknown_field", "newAddress"),  # was dropped; never the name
        (_with_address(houseNumber="seven"), "json.field_type", "newAddress.houseNumber"),  # was newAddress
        (_base64("Death"), "cloudevent.invalid", "data_base64"),  # was "data must be a JSON object"
    ],
    ids=[
        "avro-path",
        "death-no-kommune",
        "birth-no-kommune",
        "move-no-kommune",
        "unknown-attribute",
        "unknown-data-field",
        "not-a-cloudevent",
        "nested-unknown-field",
        "nested-wrong-type",
        "data-base64",
    ],
)
async def test_bad_input_is_named_in_the_clients_own_words_and_dead_lettered(
    ingest, connector_kafka, connector_app_id, event, code, field
):
    async with ingest.post("/events", json=event, headers={**STRUCTURED, **auth("every-type")}) as response:
        assert response.status == 400, await response.text()
        errors = (await response.json())["errors"]
    assert (errors[0]["code"], errors[0]["field"]) == (code, field), errors
    topics = topic_names(connector_app_id)
    assert await read_to_end(connector_kafka, topics.ingest) == []
    (dead,) = await read_to_end(connector_kafka, topics.deadletter)
    assert DeadLetter.from_headers(dead.headers).reason == code


async def test_a_connector_may_choose_to_drop_unknown_attributes_and_data_fields(
    connector_kafka, connector_app_id, monkeypatch
):
    import aiohttp
    from http_ingest_client import ingest_config, running_ingest, set_tokens

    set_tokens(monkeypatch)
    event = _with_data("Death", deathplace="Oslo")
    event["x-vendor-note"] = "from the old system"
    config = {**ingest_config(), "ignore_unknown": True}
    async with (
        running_ingest(connector_kafka, connector_app_id, config) as source,
        aiohttp.ClientSession(f"http://127.0.0.1:{source.port}") as http,
        http.post("/events", json=event, headers={**STRUCTURED, **auth("oslo-skole")}) as response,
    ):
        assert response.status == 202, await response.text()
    assert len(await read_to_end(connector_kafka, topic_names(connector_app_id).ingest)) == 1
