"""One example record per event type: for docs, round-trip tests and benchmarks.

Every identity number here is synthetic (month + 80) or an official test vector (docs/domain.md §1).
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime

from schemas.catalog import EVENTS_NAMESPACE
from schemas.life_stages import LifeStage, life_stages

PERSON = "03851598730"  # official synthetic vector
PARENTS = ["30908299902", "41819077302"]  # synthetic
PREVIOUS_IDENTIFIER = "41819077906"  # synthetic D-nummer

OSLO_ADDRESS = {
    "kommunenummer": "0301",
    "streetName": "Testveien",
    "houseNumber": 12,
    "houseLetter": "B",
    "unitNumber": "H0201",
    "postalCode": "0150",
    "postalTown": "OSLO",
}
BERGEN_ADDRESS = {
    "kommunenummer": "4601",
    "streetName": "Prøvegaten",
    "houseNumber": 3,
    "houseLetter": None,
    "unitNumber": None,
    "postalCode": "5003",
    "postalTown": "BERGEN",
}


def envelope(event_type: str, kommunenummer: list[str]) -> dict:
    return {
        "id": "6f1c2a52-2f0e-4b7c-9a51-0c8d3f7e1a01",
        "source": "urn:no:skatteetaten:folkeregisteret",
        "type": f"{EVENTS_NAMESPACE}.{event_type}",
        "specversion": "1.0",
        "time": datetime(2024, 3, 1, 8, 30, 0, tzinfo=UTC),
        "subject": "hendelsesdokument-4711",
        "dataschema": None,
        "person": PERSON,
        "kommunenummer": kommunenummer,
        "addressProtection": "ugradert",
        "changeKind": "new",
        "correctsEventId": None,
        "sequenceNumber": 1_234_567,
        "correlationId": "corr-0001",
    }


_PAYLOADS: dict[str, tuple[list[str], dict]] = {
    "Birth": (
        ["0301"],
        {
            "birthDate": date(2024, 2, 28),
            "gender": "female",
            "name": {"givenName": "Test", "middleName": None, "familyName": "Testesen"},
            "address": OSLO_ADDRESS,
            "parents": PARENTS,
        },
    ),
    "Death": (["4601"], {"deathDate": date(2024, 2, 27)}),
    "PopulationRecord": (["0301"], {"birthDate": date(2019, 5, 17), "address": OSLO_ADDRESS}),
    "Move": (
        ["0301", "4601"],
        {
            "movedDate": date(2024, 3, 1),
            "previousAddress": OSLO_ADDRESS,
            "newAddress": BERGEN_ADDRESS,
            "scope": "betweenKommuner",
            "cause": "relocation",
        },
    ),
    "Immigration": (["4601"], {"immigrationDate": date(2024, 1, 15), "fromCountry": "SWE", "address": BERGEN_ADDRESS}),
    "Emigration": (["0301"], {"emigrationDate": date(2024, 1, 31), "toCountry": "DNK"}),
    "CivilStatusChange": (["0301"], {"civilStatus": "married", "validFrom": date(2024, 2, 14), "spouse": PARENTS[0]}),
    "NameChange": (["0301"], {"name": {"givenName": "Prøve", "middleName": "Test", "familyName": "Testesen"}}),
    "ParentalResponsibilityChange": (
        ["0301"],
        {
            "holders": [{"holder": PARENTS[0], "role": "mother"}, {"holder": PARENTS[1], "role": "father"}],
            "validFrom": date(2024, 2, 1),
        },
    ),
    "SharedResidence": (["0301"], {"sharedAddress": BERGEN_ADDRESS, "startDate": date(2024, 2, 1), "endDate": None}),
    "AddressProtectionChange": (["0301"], {"protection": "fortrolig"}),
    "IdentityNumberChange": (["0301"], {"previousIdentifier": PREVIOUS_IDENTIFIER}),
    "UnknownEvent": (["0301"], {"sourceType": "endringIOpphold", "rawDocument": b'{"hendelsetype":"endringIOpphold"}'}),
}


def example(event_type: str) -> dict:
    """A fresh, valid example record of the event type (safe to mutate)."""
    stage = life_stages().get(event_type)
    if stage is not None:
        return _life_stage_example(stage)
    kommunenummer, payload = _PAYLOADS[event_type]
    return {"envelope": envelope(event_type, list(kommunenummer)), **copy.deepcopy(payload)}


def _life_stage_example(stage: LifeStage) -> dict:
    """The stage of the Birth example's child, as the router emits it (agents/routing/life_stages.py)."""
    born = _PAYLOADS["Birth"][1]["birthDate"]
    on = stage.date_for(born)
    values = {
        "stageDate": on,
        "birthDate": born,
        "ageYears": stage.age_on(born, on),
        "legalBasis": stage.law,
        "service": stage.service,
    }
    record = {"envelope": envelope(stage.name, ["0301"]), **{name: values[name] for name in stage.fields}}
    record["envelope"].update(source="urn:no:samband:life-stages", subject=None, sequenceNumber=None)
    return record


def example_types() -> list[str]:
    return sorted([*_PAYLOADS, *life_stages()])
