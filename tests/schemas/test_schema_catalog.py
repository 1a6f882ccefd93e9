"""The catalog: coverage of event types, classifications, stable ids, projections."""

import json

import fastavro
import pytest

from schemas.catalog import CLASSIFICATIONS, ENVELOPE, CatalogError, catalog
from schemas.compatibility import _classification_problems
from schemas.examples import example_types
from schemas.schema_id import schema_id

REQUIRED_SOURCE_TYPES = {
    "personErOpprettet": "Birth",
    "personErDoed": "Death",
    "endringIBostedsadresse": "Move",
    "endringIBostedsadresseVedKommuneregulering": "Move",
    "personErBosatt": "Immigration",
    "personErUtflyttet": "Emigration",
    "endringISivilstand": "CivilStatusChange",
    "endringINavn": "NameChange",
    "endringIForeldreansvar": "ParentalResponsibilityChange",
    "endringIDeltBosted": "SharedResidence",
    "endringIAdressebeskyttelse": "AddressProtectionChange",
    "endringIIdentifikasjonsnummer": "IdentityNumberChange",
}


def test_required_life_events_map_to_event_types():
    cat = catalog()
    assert {source: cat.event_type_for_source(source) for source in REQUIRED_SOURCE_TYPES} == REQUIRED_SOURCE_TYPES


def test_unknown_source_type_maps_to_unknown_event():
    assert catalog().event_type_for_source("endringIOpphold") == "UnknownEvent"


def test_every_event_type_has_an_example():
    assert example_types() == catalog().event_types()


def test_every_field_everywhere_has_a_known_classification():
    cat = catalog()
    for subject in cat.subjects:
        assert _classification_problems(subject, cat.versions[subject][-1].schema) == []


def test_classification_problems_are_found_in_nested_records():
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {
                "name": "a",
                "classification": "ordinary",
                "type": {"type": "record", "name": "N", "fields": [{"name": "inner", "type": "string"}]},
            },
        ],
    }
    assert [p.field for p in _classification_problems("R", schema)] == ["a.inner"]


def test_addresses_are_one_named_type_classified_address():
    for event_type in catalog().event_types():
        for field in catalog().fields(event_type):
            if "no.samband.common.Address" in field.avro_type.split("|") or field.path == "envelope.kommunenummer":
                assert field.classification == "address", field.path


def test_person_identifier_is_classified_identifier():
    fields = {f.path: f.classification for f in catalog().fields("Death")}
    assert fields["envelope.person"] == "identifier"


def test_unknown_address_protection_level_reads_as_strengt_fortrolig():
    assert catalog().types["no.samband.common.AddressProtection"]["default"] == "strengtFortrolig"


def test_schema_ids_do_not_collide():
    cat = catalog()
    all_versions = [v for versions in cat.versions.values() for v in versions]
    texts_by_id = {}
    for version in all_versions:
        texts_by_id.setdefault(version.id, set()).add(version.text)
    assert all(len(texts) == 1 for texts in texts_by_id.values())


def test_schema_ids_are_pinned_to_the_schema_text():
    # Same id on every machine and after restarts: the first released envelope keeps its id forever.
    assert catalog().versions[ENVELOPE][0].id == 2083326732
    assert schema_id({"type": "string"}) == schema_id(json.loads('{ "type" : "string" }'))


def test_the_committed_catalog_has_no_unreleased_changes():
    cat = catalog()
    unreleased = [s for s in cat.subjects if not cat.versions[s][-1].released]
    assert unreleased == [], "run `samband schemas release` and commit schemas/avro/released"


def test_every_schema_version_parses_with_fastavro():
    for versions in catalog().versions.values():
        for version in versions:
            fastavro.parse_schema(version.schema)


def test_projection_keeps_exactly_the_chosen_fields():
    projection = catalog().projection_json("Move", ["envelope.id", "envelope.changeKind", "newAddress", "scope"])
    assert [f["name"] for f in projection["fields"]] == ["envelope", "newAddress", "scope"]
    assert [f["name"] for f in projection["fields"][0]["type"]["fields"]] == ["id", "changeKind"]


def test_projection_inlines_a_shared_type_where_it_is_first_kept():
    # previousAddress defines Address in the full schema; without it, newAddress must define it.
    projection = catalog().projection_json("Move", ["newAddress"])
    assert projection["fields"][0]["type"][1]["name"] == "Address"
    fastavro.parse_schema(projection)


def test_projection_of_an_unknown_field_is_refused():
    with pytest.raises(CatalogError, match="nonsense"):
        catalog().projection_json("Move", ["nonsense"])


def test_fields_lists_envelope_and_payload_with_classification():
    fields = {f.path: (f.classification, f.avro_type) for f in catalog().fields("Move")}
    assert fields["newAddress"] == ("address", "null|no.samband.common.Address")
    assert fields["movedDate"] == ("ordinary", "date")
    assert fields["envelope.addressProtection"] == ("confidential", "no.samband.common.AddressProtection")
    assert all(c in CLASSIFICATIONS for c, _ in fields.values())
