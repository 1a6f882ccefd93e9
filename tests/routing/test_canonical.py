"""From ingest bytes to a canonical event: every ingest-stage rejection has its own reason code."""

from __future__ import annotations

import json
from datetime import date, timedelta
from io import BytesIO

import fastavro
import pytest
from routing_events import CODEC, address, cloudevent_json, encode, event, synthetic_number

from agents.ingest.canonical import Canonicaliser, Rejected
from schemas.catalog import catalog

PERSON = synthetic_number(12, 3, 88, 100)
CANONICALISER = Canonicaliser(CODEC, max_bytes=4096)


def _move(**overrides) -> dict:
    payload = {"previousAddress": address("0301", "Gamlevegen", 1), "newAddress": address("4601", "Nyvegen", 2)}
    return event("Move", PERSON, ["0301", "4601"], **{**payload, **overrides})


def _reason(value: bytes) -> str:
    with pytest.raises(Rejected) as caught:
        CANONICALISER.canonical(value)
    assert PERSON not in str(caught.value)
    return caught.value.reason


def test_current_avro_passes_through_byte_for_byte():
    value = encode(_move())
    canonical = CANONICALISER.canonical(value)
    assert (canonical.event_type, canonical.value) == ("Move", value)


def test_cloudevent_json_becomes_current_avro_with_the_same_content():
    record = _move()
    canonical = CANONICALISER.canonical(cloudevent_json(record))
    assert canonical.value[0] == 0
    assert CODEC.decode(canonical.value) == record


def test_an_older_schema_version_is_resolved_to_the_current_one():
    v1 = catalog().released("Move")[0]
    assert v1.id != CODEC.current_id("Move")
    record = _move()
    out = BytesIO()
    out.write(bytes([0]) + v1.id.to_bytes(4, "big"))
    fastavro.schemaless_writer(out, fastavro.parse_schema(v1.schema), record)
    canonical = CANONICALISER.canonical(out.getvalue())
    assert canonical.value[1:5] == CODEC.current_id("Move").to_bytes(4, "big")
    assert CODEC.decode(canonical.value)["envelope"]["id"] == record["envelope"]["id"]


@pytest.mark.parametrize(
    "value, reason",
    [
        (encode(_move())[:12], "wire.truncated"),
        (bytes([0]) + (123456).to_bytes(4, "big") + b"\x02ab", "wire.unknown_schema_id"),
        (b"\xff\xfe not avro, not json", "ingest.unrecognised_format"),
        (b"{not json", "ingest.unrecognised_format"),
        (b"\x00" * 5000, "ingest.oversized"),
    ],
    ids=["truncated", "unknown-schema-id", "neither-avro-nor-json", "broken-json", "oversized"],
)
def test_bytes_that_are_not_an_event(value, reason):
    assert _reason(value) == reason


def test_wrong_field_type():
    body = json.loads(cloudevent_json(_move()))
    body["data"]["newAddress"]["houseNumber"] = "two"
    assert _reason(json.dumps(body).encode()) == "json.field_type"


def test_unknown_event_type():
    body = json.loads(cloudevent_json(_move()))
    body["type"] = "no.samband.events.PersonTeleported"
    assert _reason(json.dumps(body).encode()) == "event.unknown_type"
    unknown = event("UnknownEvent", PERSON, ["0301"])
    assert _reason(encode(unknown)) == "event.unknown_type"


def test_invalid_identity_number():
    bad = PERSON[:10] + str((int(PERSON[10]) + 1) % 10)
    assert _reason(encode(event("Death", bad, ["4601"]))) == "identity.checksum"


def test_unknown_kommune():
    assert _reason(encode(event("Death", PERSON, ["9999"]))) == "kommune.unknown"


def test_missing_required_relation():
    assert _reason(encode(_move(newAddress=None))) == "relation.missing_new_address"


def test_date_in_the_future():
    tomorrow = date.today() + timedelta(days=2)
    assert _reason(encode(event("Death", PERSON, ["4601"], deathDate=tomorrow))) == "date.future"


def test_cloudevent_without_time_zone_is_rejected():
    body = json.loads(cloudevent_json(_move()))
    body["time"] = "2024-03-01T08:30:00"
    assert _reason(json.dumps(body).encode()) == "json.field_type"


def test_a_json_date_given_as_a_day_number_is_refused():
    # The docs promise ISO 8601 dates in JSON; a number was once read as days since 1970.
    body = json.loads(cloudevent_json(event("Death", PERSON, ["4601"])))
    body["data"]["deathDate"] = (date(2024, 3, 1) - date(1970, 1, 1)).days
    assert _reason(json.dumps(body).encode()) == "json.field_type"


def test_cloudevent_json_with_unknown_names_is_refused_unless_the_worker_ignores_them():
    """Found in review: CloudEvents JSON written straight to the ingest topic had no opt-out
    (SAMBAND_INGEST_IGNORE_UNKNOWN), as HTTP ingest and the drop folder have."""
    record = _move()
    event = json.loads(cloudevent_json(record))
    extra = event | {"colour": "blue", "data": event["data"] | {"shoeSize": 44}}
    assert _reason(json.dumps(extra).encode()) == "cloudevent.unknown_attribute"
    lenient = Canonicaliser(CODEC, max_bytes=4096, ignore_unknown=True)
    assert CODEC.decode(lenient.canonical(json.dumps(extra).encode()).value) == record
