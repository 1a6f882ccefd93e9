"""`samband schemas list | show | docs`, and the committed catalog page."""

import json
from pathlib import Path

from agents.cli import COMMAND_MODULES, build_parser
from schemas.catalog import catalog
from schemas.docs import render_catalog

CATALOG_PAGE = Path(__file__).resolve().parents[2] / "docs" / "catalog.md"


def run(capsys, *argv) -> tuple[int, str]:
    args = build_parser().parse_args(["schemas", *argv])
    code = args.handler(args)
    return code, capsys.readouterr().out


def test_schemas_is_a_samband_command_group():
    assert "agents.commands.schemas" in COMMAND_MODULES


def test_list_shows_every_subject_with_version_and_id(capsys):
    code, out = run(capsys, "list")
    assert code == 0
    move = catalog().current("Move")
    rows = [line.split() for line in out.splitlines()]
    assert ["no.samband.events.Move", str(move.version), str(move.id), "BACKWARD_TRANSITIVE"] in rows
    assert len(out.splitlines()) == 1 + len(catalog().subjects)


def test_show_prints_the_current_self_contained_schema(capsys):
    code, out = run(capsys, "show", "Move")
    assert code == 0
    assert json.loads(out) == catalog().current("Move").schema


def test_show_a_released_version(capsys):
    code, out = run(capsys, "show", "Envelope", "--version", "1")
    assert code == 0
    assert "correlationId" not in [f["name"] for f in json.loads(out)["fields"]]


def test_show_an_unknown_name_fails(capsys):
    args = build_parser().parse_args(["schemas", "show", "Nonsense"])
    assert args.handler(args) == 2


def test_committed_catalog_page_is_up_to_date():
    assert CATALOG_PAGE.read_text("utf-8") == render_catalog(catalog()), "run `samband schemas docs > docs/catalog.md`"


def test_catalog_page_lists_every_event_type_with_fields_and_an_example():
    page = render_catalog(catalog())
    for event_type in catalog().event_types():
        assert f"## {event_type} (`no.samband.events.{event_type}`)" in page
    assert "| `newAddress` | `null\\|no.samband.common.Address` | address |" in page
    assert page.count("```json") == len(catalog().event_types())
