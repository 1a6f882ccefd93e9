"""Folkeregister event documents -> catalog records (docs/folkeregister-feed.md, schemas/catalog.py).

`to_record(document)` returns (event type, record) or raises Unmappable with a stable
reason: `event.unknown_type` (a hendelsetype the catalog does not know) or
`source.unmappable` (a known type whose document lacks what the record needs).
The event id is the hendelsesdokument id, so reading the same document again gives the
same event (ingest deduplicates by it).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

from schemas.catalog import EVENTS_NAMESPACE, UNKNOWN_EVENT, catalog
from schemas.moves import move_scope

SOURCE_URI = "urn:no:skatteetaten:folkeregisteret"

CHANGE_KINDS = {
    "registrereNy": "new",
    "korrigere": "correction",
    "korrigereHistorisk": "correction",
    "annullere": "annulment",
}
GENDERS = {"kvinne": "female", "mann": "male"}
CIVIL_STATUSES = {
    "ugift": "unmarried", "gift": "married", "skilt": "divorced", "separert": "separated",
    "enkeEllerEnkemann": "widowed", "registrertPartner": "registeredPartner",
    "separertPartner": "separatedPartner", "skiltPartner": "divorcedPartner", "gjenlevendePartner": "survivingPartner",
}  # fmt: skip
PROTECTIONS = {"ugradert", "klientadresse", "fortrolig", "strengtFortrolig", "strengtFortroligUtland"}
PARENT_ROLES = {"mor": "mother", "far": "father", "medmor": "coMother"}


class Unmappable(ValueError):
    """The document cannot become a catalog record; the message holds no personal data."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def to_record(document: dict) -> tuple[str, dict]:
    hendelsetype = document.get("hendelsetype")
    event_type = catalog().event_type_for_source(hendelsetype) if isinstance(hendelsetype, str) else UNKNOWN_EVENT
    if event_type == UNKNOWN_EVENT:
        raise Unmappable("event.unknown_type", f"hendelsetype {str(hendelsetype)[:80]!r} is not in the catalog")
    try:
        kind = CHANGE_KINDS[document["entitetsendring"]]
        facts = document.get("opplysninger") or {}
        payload, kommuner = _PAYLOADS[event_type](facts, hendelsetype, kind, _day(document["ajourholdstidspunkt"]))
        envelope = {
            "id": document["hendelsesdokument"],
            "source": SOURCE_URI,
            "type": f"{EVENTS_NAMESPACE}.{event_type}",
            "specversion": "1.0",
            "time": _time(document["ajourholdstidspunkt"]),
            "subject": document["hendelsesdokument"],
            "dataschema": None,
            "person": document["folkeregisteridentifikator"],
            "kommunenummer": sorted({k for k in kommuner if k}),
            "addressProtection": _protection(document.get("adressebeskyttelse")),
            "changeKind": kind,
            "correctsEventId": document.get("gjelderHendelsesdokument"),
            "sequenceNumber": int(document["sekvensnummer"]),
            "correlationId": None,
        }
    except (KeyError, TypeError, ValueError) as exc:
        # The exception text may quote document content; only its kind and the field name go out.
        field = exc.args[0] if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str) else None
        detail = f"missing {field}" if field else type(exc).__name__
        raise Unmappable(
            "source.unmappable", f"{hendelsetype} document cannot be mapped to {event_type}: {detail}"
        ) from None
    return event_type, {"envelope": envelope, **payload}


# --- field translations -------------------------------------------------------------------


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _day(value: str) -> date:
    return _time(value).date()


def _date(value: str | None, fallback: date) -> date:
    return date.fromisoformat(value) if value else fallback


def _protection(value: str | None) -> str:
    return value if value in PROTECTIONS else "ugradert"


def address_record(value: dict | None) -> dict | None:
    """A register address document (bostedsadresse) as the catalog's Address."""
    if not value:
        return None
    return {
        "kommunenummer": value["kommunenummer"],
        "streetName": value.get("adressenavn"),
        "houseNumber": value.get("husnummer"),
        "houseLetter": value.get("husbokstav"),
        "unitNumber": value.get("bruksenhetsnummer"),
        "postalCode": value.get("postnummer"),
        "postalTown": value.get("poststed"),
    }


def _name(value: dict | None) -> dict | None:
    if not value:
        return None
    return {"givenName": value["fornavn"], "middleName": value.get("mellomnavn"), "familyName": value["etternavn"]}


def _kommune(address: dict | None) -> str | None:
    return address["kommunenummer"] if address else None


# --- one function per event type: (opplysninger, hendelsetype, change kind, day of update) -> (payload, kommuner)
# An annulment carries no opplysninger; its required dates fall back to the day of the annulment.

Payload = tuple[dict, list]


def _birth(f: dict, _t: str, _k: str, day: date) -> Payload:
    address = address_record(f.get("bostedsadresse"))
    parents = [p for p in (f.get("mor"), f.get("far")) if p]
    gender = GENDERS.get(f.get("kjoenn"), "unknown")
    return {"birthDate": _date(f.get("foedselsdato"), day), "gender": gender, "name": _name(f.get("navn")),
            "address": address, "parents": parents}, [_kommune(address)]  # fmt: skip


def _death(f: dict, _t: str, _k: str, day: date) -> Payload:
    return {"deathDate": _date(f.get("doedsdato"), day)}, []


def _immigration(f: dict, _t: str, _k: str, day: date) -> Payload:
    address = address_record(f.get("bostedsadresse"))
    return {"immigrationDate": _date(f.get("innflyttingsdato"), day), "fromCountry": f.get("innflyttetFra"),
            "address": address}, [_kommune(address)]  # fmt: skip


def _emigration(f: dict, _t: str, _k: str, day: date) -> Payload:
    return {"emigrationDate": _date(f.get("utflyttingsdato"), day), "toCountry": f.get("utflyttetTil")}, [
        _kommune(address_record(f.get("forrigeBostedsadresse")))
    ]


MOVE_CAUSES = {
    "endringIBostedsadresse": "relocation",
    "endringIBostedsadresseUtenFlytting": "addressChangeWithoutMove",
    "endringIBostedsadresseVedKommuneregulering": "municipalReform",
}


def _move(f: dict, hendelsetype: str, _k: str, day: date) -> Payload:
    new, previous = address_record(f.get("bostedsadresse")), address_record(f.get("forrigeBostedsadresse"))
    previous_kommune = _kommune(previous) or f.get("forrigeKommunenummer")
    new_kommune = _kommune(new) or f.get("kommunenummer")
    scope = move_scope(previous_kommune, new_kommune) if previous_kommune else "betweenKommuner"
    moved = _date(f.get("flyttedato") or f.get("gyldigFra"), day)
    return {"movedDate": moved, "previousAddress": previous, "newAddress": new, "scope": scope,
            "cause": MOVE_CAUSES[hendelsetype]}, [previous_kommune, new_kommune]  # fmt: skip


def _civil_status(f: dict, _t: str, _k: str, day: date) -> Payload:
    status = CIVIL_STATUSES.get(f.get("sivilstand"), "unknown")
    return {
        "civilStatus": status,
        "validFrom": _date(f.get("gyldigFra"), day),
        "spouse": f.get("relatertVedSivilstand"),
    }, []


def _name_change(f: dict, _t: str, kind: str, _day: date) -> Payload:
    name = _name(f.get("navn"))
    if name is None:
        if kind != "annulment":
            raise KeyError("navn")
        name = {"givenName": "", "middleName": None, "familyName": ""}  # an annulment names nobody
    return {"name": name}, []


def _parental_responsibility(f: dict, _t: str, _k: str, day: date) -> Payload:
    ansvar, holders = f.get("ansvar"), f.get("ansvarlige") or []
    if ansvar == "felles" and len(holders) == 2:
        roles = ["mother", "father"]  # the register lists joint holders mother first
    else:
        roles = [PARENT_ROLES.get(ansvar, "other")] * len(holders)
    return {"holders": [{"holder": h, "role": r} for h, r in zip(holders, roles, strict=False)],
            "validFrom": _date(f.get("gyldigFra"), day)}, []  # fmt: skip


def _shared_residence(f: dict, _t: str, _k: str, day: date) -> Payload:
    address = address_record(f.get("adresse"))
    end = f.get("sluttdato")
    return {"sharedAddress": address, "startDate": _date(f.get("startdato"), day),
            "endDate": date.fromisoformat(end) if end else None}, [_kommune(address)]  # fmt: skip


def _address_protection(f: dict, _t: str, _k: str, _day: date) -> Payload:
    return {"protection": _protection(f.get("gradering"))}, []


def _identity_change(f: dict, _t: str, _k: str, _day: date) -> Payload:
    return {"previousIdentifier": f["forrigeFolkeregisteridentifikator"]}, []


_PAYLOADS: dict[str, Callable[[dict, str, str, date], Payload]] = {
    "Birth": _birth,
    "Death": _death,
    "Immigration": _immigration,
    "Emigration": _emigration,
    "Move": _move,
    "CivilStatusChange": _civil_status,
    "NameChange": _name_change,
    "ParentalResponsibilityChange": _parental_responsibility,
    "SharedResidence": _shared_residence,
    "AddressProtectionChange": _address_protection,
    "IdentityNumberChange": _identity_change,
}
