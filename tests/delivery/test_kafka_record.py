"""The Kafka sink's record: projected delivery JSON to Avro of the projection schema, and its headers."""

from __future__ import annotations

import json
from datetime import date

import pytest

from connectors.api import Context, DeadLetters, Output, SinkRecord, StateStore, Subscriber
from connectors.kafka_sink.avro_record import RecordError, to_avro
from connectors.kafka_sink.sink import KafkaSink, absent_when_withheld
from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.registry import CatalogRegistry

MOVE_FIELDS = ["envelope.person", "envelope.kommunenummer", "movedDate", "newAddress", "scope"]


def _sink(fields=None) -> KafkaSink:
    import structlog

    extras = {"topic_writer": None, "schema_registry": CatalogRegistry(catalog()), "subscriber_topic_prefix": "sub."}
    subscriber = Subscriber("t", fields or {"Move": MOVE_FIELDS})
    context = Context("t", Output(), DeadLetters(), StateStore(), structlog.get_logger(), extras, subscriber)
    return KafkaSink(KafkaSink.parse_config({}), context)


def _record(data: dict, kind: str = "event", event_type: str = "no.samband.events.Move") -> SinkRecord:
    event = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "urn:test",
        "type": event_type,
        "time": "2024-03-01T12:00:00+00:00",
        "subject": "ab" * 16,
        "changekind": "new",
        "data": data,
    }
    value = {"idempotency_key": "e-1.t", "subscription": "t", "person": "ab" * 16, "event": event, "kind": kind}
    return SinkRecord(
        b"t/" + b"ab" * 16, json.dumps(value).encode(), [("traceparent", b"00-1-2-01"), ("samband-source", b"x")]
    )


def test_withheld_address_fields_are_null_or_empty_and_dates_are_avro_dates():
    schema = catalog().projection_json("Move", MOVE_FIELDS)
    record = to_avro(schema, {"envelope": {"person": "p"}, "movedDate": "2024-03-01", "scope": "withinKommune"})
    assert record == {
        "envelope": {"person": "p", "kommunenummer": []},
        "movedDate": date(2024, 3, 1),
        "newAddress": None,
        "scope": "withinKommune",
    }
    with pytest.raises(RecordError, match="movedDate"):
        to_avro(schema, {"envelope": {"person": "p"}, "scope": "withinKommune"})


def test_value_is_wire_format_avro_of_the_projection_and_headers_carry_the_idempotency_key():
    sink = _sink()
    key, value, headers = sink.encode(
        _record({"envelope": {"person": "p"}, "movedDate": "2024-03-01", "scope": "withinKommune"})
    )
    registry = CatalogRegistry(catalog())
    decoded = Codec(registry).decode(value)
    assert decoded["movedDate"] == date(2024, 3, 1) and decoded["newAddress"] is None
    projection = absent_when_withheld(catalog().projection_json("Move", MOVE_FIELDS), "Move")
    assert registry.schema_by_id(int.from_bytes(value[1:5], "big")) == projection
    assert key == b"ab" * 16
    assert dict(headers) == {
        "ce_specversion": b"1.0",
        "ce_id": b"e-1",
        "ce_source": b"urn:test",
        "ce_type": b"no.samband.events.Move",
        "ce_time": b"2024-03-01T12:00:00+00:00",
        "ce_subject": b"ab" * 16,
        "ce_changekind": b"new",
        "content-type": b"application/avro",
        "samband-idempotency-key": b"e-1.t",
        "traceparent": b"00-1-2-01",
    }


def test_purge_is_a_purge_record_and_an_ungranted_type_is_rejected():
    sink = _sink()
    _, value, headers = sink.encode(_record({"delete": "address"}, kind="purge", event_type="no.samband.purge"))
    assert Codec(CatalogRegistry(catalog())).decode(value) == {"delete": "address"}
    assert dict(headers)["ce_type"] == b"no.samband.purge"
    with pytest.raises(RecordError, match="Death"):
        sink.encode(_record({"deathDate": "2024-03-01"}, event_type="no.samband.events.Death"))
