"""`samband schemas list | show NAME | check | release | docs`: the event catalog from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from schemas.catalog import AVRO_DIR, Catalog, CatalogError
from schemas.compatibility import check, release, rule_for
from schemas.docs import render_catalog


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schemas", help="the Avro event catalog: list, show, check, release, docs")
    parser.add_argument("--catalog-dir", type=Path, default=AVRO_DIR, help="catalog root (default: the shipped one)")
    commands = parser.add_subparsers(dest="schemas_command", metavar="SUBCOMMAND", required=True)
    listing = commands.add_parser("list", help="every subject with its current version and schema id")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=list_schemas)
    show = commands.add_parser("show", help="the current schema of NAME (e.g. Move), self-contained")
    show.add_argument("name")
    show.add_argument("--version", type=int, help="a released version instead of the current one")
    show.set_defaults(handler=show_schema)
    checking = commands.add_parser(
        "check", help="exit 1 when the working tree breaks compatibility with a released version"
    )
    checking.add_argument("--json", action="store_true", help='{"compatible": ..., "problems": [...]} on stdout')
    checking.set_defaults(handler=check_schemas)
    commands.add_parser("release", help="check, then store every changed schema as its next version").set_defaults(
        handler=release_schemas
    )
    commands.add_parser("docs", help="print the catalog page (docs/catalog.md)").set_defaults(handler=print_docs)


def list_schemas(args) -> int:
    cat = Catalog(args.catalog_dir)
    if args.json:
        rows = [
            {"subject": s, "version": v.version, "id": v.id, "rule": rule_for(s), "released": v.released}
            for s in cat.subjects
            for v in cat.versions[s][-1:]
        ]
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'subject':<48} {'version':>7} {'id':>10}  rule")
    for subject in cat.subjects:
        current = cat.versions[subject][-1]
        state = "" if current.released else " (unreleased)"
        print(f"{subject:<48} {current.version:>7} {current.id:>10}  {rule_for(subject)}{state}")
    return 0


def show_schema(args) -> int:
    cat = Catalog(args.catalog_dir)
    try:
        versions = cat.versions[cat.subject(args.name)]
    except CatalogError as exc:
        print(f"samband: {exc}", file=sys.stderr)
        return 2
    chosen = [v for v in versions if v.version == args.version] if args.version else versions[-1:]
    if not chosen:
        print(f"samband: {args.name} has no version {args.version}", file=sys.stderr)
        return 2
    print(json.dumps(chosen[0].schema, indent=2, ensure_ascii=False))
    return 0


def check_schemas(args) -> int:
    problems = check(Catalog(args.catalog_dir))
    if getattr(args, "json", False):
        print(json.dumps({"compatible": not problems, "problems": problems}, indent=2))
        return 1 if problems else 0
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print("schemas: compatible with every released version")
    return 0


def release_schemas(args) -> int:
    if check_schemas(args):
        return 1
    for version in release(Catalog(args.catalog_dir)):
        print(f"released {version.subject} v{version.version} (id {version.id})")
    return 0


def print_docs(args) -> int:
    sys.stdout.write(render_catalog(Catalog(args.catalog_dir)))
    return 0
