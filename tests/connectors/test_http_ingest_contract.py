"""The HTTP-ingest OpenAPI document is a contract a client can be generated from: each event
type's `data` is described from the Avro catalog, and a generated client's Move is accepted."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import jsonschema
import pytest
from http_ingest_client import EVENT_TYPES, auth, cloudevent
from kafka_io import event_id, read_to_end

from bus.topics import topic_names
from connectors.http_ingest.openapi import openapi_document
from schemas.examples import PERSON


def _validator(document: dict) -> jsonschema.Draft202012Validator:
    """Validates against the document's `CloudEvent`, its references resolved within the document."""
    return jsonschema.Draft202012Validator(
        {**document, "$ref": "#/components/schemas/CloudEvent"}, format_checker=jsonschema.FormatChecker()
    )


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_catalog_example_is_valid_by_the_document(event_type):
    errors = list(_validator(openapi_document(100)).iter_errors(cloudevent(event_type)))
    assert not errors, [e.message for e in errors]


def test_the_data_schema_has_dates_enums_and_required_fields_from_avro():
    schemas = openapi_document(100)["components"]["schemas"]
    move = schemas["MoveData"]
    assert move["properties"]["movedDate"]["type"] == "string" and move["properties"]["movedDate"]["format"] == "date"
    assert move["required"] == ["movedDate", "scope"] and move["additionalProperties"] is False
    assert schemas["MoveScope"]["enum"] == ["withinKommune", "betweenKommuner"]
    assert move["properties"]["newAddress"]["anyOf"] == [{"$ref": "#/components/schemas/Address"}, {"type": "null"}]
    assert schemas["Address"]["required"] == ["kommunenummer"]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"data": {"movedDate": "2024-03-01", "scope": "withinKommune", "colour": "blue"}}, "unknown data field"),
        ({"data": {"movedDate": "2024-03-01", "scope": "elsewhere"}}, "not an enum symbol"),
        ({"data": {"movedDate": "1 March", "scope": "withinKommune"}}, "not a date"),
        ({"data": {"scope": "withinKommune"}}, "required field missing"),
        ({"colour": "blue"}, "unknown attribute"),
    ],
)
def test_the_document_itself_refuses_unknown_names_bad_enums_dates_and_missing_fields(change, why):
    assert list(_validator(openapi_document(100)).iter_errors(cloudevent("Move", **change))), why


def _generated_models(document: dict, folder: Path, monkeypatch):
    """The pydantic models datamodel-code-generator makes of the document, imported."""
    spec = folder / "openapi.json"
    spec.write_text(json.dumps(document))
    target = folder / "ingest_models.py"
    subprocess.run(
        [sys.executable, "-m", "datamodel_code_generator", "--input", str(spec), "--input-file-type", "openapi",
         "--output-model-type", "pydantic_v2.BaseModel", "--formatters", "builtin", "--output", str(target)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    module_spec = importlib.util.spec_from_file_location("ingest_models", target)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    monkeypatch.setitem(sys.modules, "ingest_models", module)  # pydantic looks its models' module up
    module_spec.loader.exec_module(module)
    return module


@pytest.mark.kafka
async def test_a_client_generated_from_the_served_document_posts_a_move_and_gets_202(
    ingest, connector_kafka, connector_app_id, tmp_path, monkeypatch
):
    async with ingest.get("/openapi.json") as response:
        models = _generated_models(await response.json(), tmp_path, monkeypatch)
    move = models.MoveEvent(
        specversion="1.0",
        id="generated-client-move-1",
        source="urn:no:kommune:4601:folkeregister-klient",
        type="no.samband.events.Move",
        time=datetime(2024, 3, 1, 9, 30, tzinfo=UTC),
        person=PERSON,
        kommunenummer=["4601"],
        data=models.MoveData(
            movedDate=date(2024, 3, 1),
            newAddress=models.Address(kommunenummer="4601", streetName="Syntetisk gate", houseNumber=7),
            scope=models.MoveScope.withinKommune,
        ),
    )
    body = move.model_dump_json(exclude_none=True)
    headers = {"Content-Type": "application/cloudevents+json", **auth()}
    async with ingest.post("/events", data=body, headers=headers) as response:
        assert response.status == 202, await response.text()
        assert await response.json() == {"accepted": ["generated-client-move-1"]}
    records = await read_to_end(connector_kafka, topic_names(connector_app_id).ingest)
    assert [event_id(r) for r in records] == ["generated-client-move-1"]
    # The generated union tells the event types apart by `type`, as a client reading them back would.
    assert type(models.CloudEvent.model_validate_json(body).root) is models.MoveEvent
