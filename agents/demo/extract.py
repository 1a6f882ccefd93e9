"""The demo's register extract (uttrekk): a PopulationRecord for each synthetic resident born in one
year, so the bus learns the birth dates of children it never saw born (docs/life-stages.md).

The feed's year brings births; a municipality that starts the bus also loads the children it
already has. Here: those who start school in the run's life-stage year. The records go to the
ingest topic keyed as every source keys them (`IngestKey`), validated like any event.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import numpy as np

from connectors.folkeregister.mapping import address_record
from schemas.catalog import EVENTS_NAMESPACE
from schemas.codec import Codec
from schemas.ingest_key import IngestKey
from schemas.protection import is_strict
from synthetic import Simulation
from synthetic.identity_numbers import EPOCH, format_identity
from synthetic.population import ADRESSEBESKYTTELSE, RESIDENT

SOURCE = "urn:no:samband:demo:uttrekk"


def population_records(simulation: Simulation, born_in: int) -> list[dict]:
    """A PopulationRecord for each resident born in `born_in`, as the register holds them now."""
    p = simulation.population
    first, last = (date(born_in, 1, 1) - date(1970, 1, 1)).days, (date(born_in, 12, 31) - date(1970, 1, 1)).days
    rows = np.flatnonzero((p.status[: p.size] == RESIDENT) & (p.birth[: p.size] >= first) & (p.birth[: p.size] <= last))
    return [population_record(simulation, int(row)) for row in rows]


def population_record(simulation: Simulation, row: int, source: str = SOURCE) -> dict:
    """The PopulationRecord of the person in `row`, as the register holds them now: a strengt
    fortrolig person's with no address and no kommune."""
    p = simulation.population
    protection = ADRESSEBESKYTTELSE[p.protection[row]]
    address = (
        None
        if is_strict(protection)
        else address_record(simulation.geography.address(int(p.kommune[row]), int(p.street[row]), int(p.house[row])))
    )
    return {
        "envelope": {
            "id": str(uuid.uuid4()),
            "source": source,
            "type": f"{EVENTS_NAMESPACE}.PopulationRecord",
            "specversion": "1.0",
            "time": datetime.now(UTC),
            "subject": None,
            "dataschema": None,
            "person": format_identity(int(p.ident[row])),
            "kommunenummer": [] if address is None else [address["kommunenummer"]],
            "addressProtection": protection,
            "changeKind": "new",
            "correctsEventId": None,
            "sequenceNumber": None,
            "correlationId": None,
        },
        "birthDate": (EPOCH + np.timedelta64(int(p.birth[row]), "D")).astype(object),
        "address": address,
    }


def encoded(records: list[dict], codec: Codec, ingest_key: IngestKey) -> list[tuple[bytes | None, bytes]]:
    """(key, value) of each record for the ingest topic."""
    schema_id = codec.current_id("PopulationRecord")
    values = [codec.encode(record, schema_id) for record in records]
    return [(ingest_key.of(value), value) for value in values]
