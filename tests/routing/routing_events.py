"""Synthetic events for the routing tests: identity numbers with month + 80, invented addresses."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, date, datetime

from schemas.catalog import EVENTS_NAMESPACE, catalog
from schemas.codec import Codec
from schemas.examples import example
from schemas.identity import control_digits
from schemas.registry import CatalogRegistry

CODEC = Codec(CatalogRegistry(catalog()))


def synthetic_number(day: int, month: int, yy: int, individ: int) -> str:
    """A synthetic fødselsnummer (month + 80): the first individnummer from `individ` that has control digits."""
    for i in range(individ, 1000):
        first9 = f"{day:02d}{month + 80:02d}{yy:02d}{i:03d}"
        digits = control_digits(first9)
        if digits:
            return first9 + digits
    raise ValueError("no synthetic number left for this date")


def address(kommune: str, street: str, number: int) -> dict:
    return {
        "kommunenummer": kommune,
        "streetName": street,
        "houseNumber": number,
        "houseLetter": None,
        "unitNumber": None,
        "postalCode": "9999",
        "postalTown": "PRØVESTAD",
    }


def event(event_type: str, person: str, kommuner: list[str], **payload) -> dict:
    """A valid record of the event type for `person`, with a fresh id; payload fields override the example's."""
    record = example(event_type)
    record["envelope"].update(
        id=str(uuid.uuid4()),
        person=person,
        kommunenummer=list(kommuner),
        sequenceNumber=None,
        correlationId=None,
        time=datetime.now(UTC).replace(microsecond=0),
    )
    envelope_overrides = payload.pop("envelope", {})
    record["envelope"].update(envelope_overrides)
    record.update(copy.deepcopy(payload))
    return record


def encode(record: dict) -> bytes:
    event_type = record["envelope"]["type"].rpartition(".")[2]
    return CODEC.encode(record, CODEC.current_id(event_type))


def cloudevent_json(record: dict) -> bytes:
    """The record as a CloudEvents 1.0 JSON object in the ingest profile (agents/ingest/canonical.py)."""
    envelope = record["envelope"]
    body = {
        "specversion": "1.0",
        "id": envelope["id"],
        "source": envelope["source"],
        "type": envelope["type"],
        "time": envelope["time"].isoformat(),
        "subject": envelope["subject"],
        "person": envelope["person"],
        "kommunenummer": envelope["kommunenummer"],
        "addressprotection": envelope["addressProtection"],
        "changekind": envelope["changeKind"],
        "correctseventid": envelope["correctsEventId"],
        "data": {k: _json(v) for k, v in record.items() if k != "envelope"},
    }
    return json.dumps(body).encode()


def _json(value):
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value


def event_type_name(name: str) -> str:
    return f"{EVENTS_NAMESPACE}.{name}"
