"""`samband schemas check`: the real catalog passes, deliberately breaking changes are named."""

import argparse
import json
import shutil

import pytest

from agents.commands import schemas as schemas_command
from schemas.catalog import AVRO_DIR

TYPES = "types"


def run(*argv) -> int:
    parser = argparse.ArgumentParser()
    schemas_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["schemas", *argv])
    return args.handler(args)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "avro"
    shutil.copytree(AVRO_DIR, root)
    return root


def edit(root, fullname, change):
    path = root / TYPES / f"{fullname}.avsc"
    schema = json.loads(path.read_text("utf-8"))
    change(schema)
    path.write_text(json.dumps(schema), "utf-8")


def field(schema, name):
    return next(f for f in schema["fields"] if f["name"] == name)


def test_the_shipped_catalog_passes(capsys):
    assert run("check") == 0
    assert "compatible" in capsys.readouterr().out


def test_removing_an_envelope_field_without_default_is_rejected(tree, capsys):
    edit(tree, "no.samband.envelope.Envelope", lambda s: s["fields"].remove(field(s, "person")))
    assert run("--catalog-dir", str(tree), "check") == 1
    err = capsys.readouterr().err
    assert "no.samband.envelope.Envelope: field person: reader_field_missing_default_value" in err
    assert "FULL_TRANSITIVE" in err


def test_changing_an_event_field_type_is_rejected(tree, capsys):
    edit(tree, "no.samband.events.Death", lambda s: field(s, "deathDate").update(type="string"))
    assert run("--catalog-dir", str(tree), "check") == 1
    err = capsys.readouterr().err
    assert "no.samband.events.Death: field deathDate: type_mismatch" in err
    assert "BACKWARD_TRANSITIVE" in err


def test_changing_a_nested_address_field_type_names_the_nested_field(tree, capsys):
    edit(tree, "no.samband.common.Address", lambda s: field(s, "houseNumber").update(type="string"))
    assert run("--catalog-dir", str(tree), "check") == 1
    assert "no.samband.events.Move: field previousAddress.houseNumber: type_mismatch" in capsys.readouterr().err


def test_adding_an_event_field_without_default_is_rejected(tree, capsys):
    new_field = {"name": "cause", "type": "string", "classification": "ordinary"}
    edit(tree, "no.samband.events.Death", lambda s: s["fields"].append(new_field))
    assert run("--catalog-dir", str(tree), "check") == 1
    assert "no.samband.events.Death: field cause: reader_field_missing_default_value" in capsys.readouterr().err


def test_adding_an_optional_field_passes_and_releases_as_next_version(tree, capsys):
    new_field = {"name": "place", "type": ["null", "string"], "default": None, "classification": "ordinary"}
    edit(tree, "no.samband.events.Death", lambda s: s["fields"].append(new_field))
    assert run("--catalog-dir", str(tree), "release") == 0
    assert "released no.samband.events.Death v3" in capsys.readouterr().out
    assert (tree / "released" / "no.samband.events.Death" / "v3.avsc").exists()


def test_a_field_without_classification_is_rejected(tree, capsys):
    edit(tree, "no.samband.events.Death", lambda s: field(s, "deathDate").pop("classification"))
    assert run("--catalog-dir", str(tree), "check") == 1
    assert "field deathDate: classification must be one of" in capsys.readouterr().err


def test_a_breaking_change_is_not_released(tree):
    edit(tree, "no.samband.events.Death", lambda s: field(s, "deathDate").update(type="string"))
    assert run("--catalog-dir", str(tree), "release") == 1
    assert not (tree / "released" / "no.samband.events.Death" / "v3.avsc").exists()
