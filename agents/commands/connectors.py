"""`samband connectors list | show | run | new`: installed connectors and delivery kinds, one in
detail, running a source, a skeleton for a new one."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

import yaml

from agents.cli import UsageError


def _installed() -> dict[str, tuple[str, type]]:
    """name -> (role, class) of every installed source and delivery kind."""
    from connectors.api import delivery_kinds, discover

    return {
        **{n: ("source", c) for n, c in discover().items()},
        **{n: ("delivery kind", c) for n, c in delivery_kinds().items()},
    }


def _list(args: argparse.Namespace) -> int:
    from connectors.api import delivery_kinds, discover

    listed = {"source": discover(), "delivery kind": delivery_kinds()}
    if args.json:
        print(json.dumps({f"{role}s": {name: {"class": f"{c.__module__}:{c.__qualname__}", "description": c.description,
                                              "config_schema": c.config_schema()}
                                       for name, c in found.items()} for role, found in listed.items()}, indent=2))  # fmt: skip
        return 0
    print(f"{'NAME':<16} {'ROLE':<14} DESCRIPTION")
    for role, found in listed.items():
        for name, cls in found.items():
            print(f"{name:<16} {role:<14} {cls.description.splitlines()[0] if cls.description else ''}")
    print("\n`samband connectors show NAME` gives a connector's config schema and an example.")
    return 0


def _show(args: argparse.Namespace) -> int:
    found = _installed()
    if args.name not in found:
        raise UsageError(f"no connector or delivery kind named {args.name!r}; installed: {', '.join(sorted(found))}")
    role, cls = found[args.name]
    schema = cls.config_schema()
    example = config_example(schema, schema.get("$defs", {}))
    if role == "delivery kind":
        example = {"kind": args.name, **example}
    if args.json:
        print(json.dumps({"name": args.name, "role": role, "class": f"{cls.__module__}:{cls.__qualname__}",
                          "description": cls.description, "config_schema": schema, "example": example}, indent=2))  # fmt: skip
        return 0
    print(f"{args.name}  ({role}, {cls.__module__}:{cls.__qualname__})")
    if cls.description:
        print(f"  {cls.description}")
    required = set(schema.get("required", []))
    print("\nsettings:")
    for field, spec in schema.get("properties", {}).items():
        need = "required" if field in required else f"default {json.dumps(spec.get('default'))}"
        about = spec.get("description", "")
        print(f"  {field:<22} {_type_of(spec):<10} {need:<18} {about}".rstrip())
    where = (
        "the subscription's `delivery` object, with `kind: " + args.name + "`"
        if role == "delivery kind"
        else "--config FILE"
    )
    print(f"\nexample ({where}):")
    print("  " + yaml.safe_dump(example, sort_keys=False, allow_unicode=True).strip().replace("\n", "\n  "))
    return 0


def _type_of(spec: dict) -> str:
    if "type" in spec:
        return str(spec["type"])
    kinds = [s.get("type", "object") for s in spec.get("anyOf", []) if s.get("type") != "null"]
    return "|".join(kinds) or "object"


_PLACEHOLDER = {"string": "<text>", "integer": 0, "number": 0.0, "boolean": False, "array": [], "object": {}}


def config_example(schema: dict, defs: dict) -> dict:
    """A config that shows every setting: its default, else a placeholder of its type (to fill in);
    a list of objects shows one."""
    example = {}
    for field, spec in schema.get("properties", {}).items():
        if "default" in spec:
            example[field] = spec["default"]
        elif spec.get("type") == "array" and "$ref" in spec.get("items", {}):
            example[field] = [config_example(defs[spec["items"]["$ref"].rpartition("/")[2]], defs)]
        else:
            example[field] = _PLACEHOLDER.get(_type_of(spec).split("|")[0], "<value>")
    return example


def _load_config(path: str) -> dict:
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)  # YAML is a superset of JSON: both work
    except yaml.YAMLError:
        raise UsageError(f"config file {path} is not valid YAML or JSON") from None
    if not isinstance(raw, dict):
        raise UsageError(f"config file {path} must hold a mapping of settings")
    return raw


def _run(args: argparse.Namespace) -> int:
    from agents.config import bootstrap_servers, dead_letter_key, get_settings, require_keys
    from agents.logging import configure_logging
    from connectors.api import ConfigError, delivery_kinds, discover
    from connectors.runtime import open_connector

    settings = get_settings()
    require_keys(settings)
    configure_logging(settings.log_level, settings.log_format)
    found = discover()
    if args.name in delivery_kinds():
        raise UsageError(
            f"{args.name} is a delivery kind: it runs inside the delivery stage for the subscriptions that name it"
        )
    if args.name not in found:
        raise UsageError(f"no source connector named {args.name!r}; installed: {', '.join(found) or 'none'}")
    cls = found[args.name]
    raw = _load_config(args.config)

    async def run() -> None:
        async with open_connector(
            cls,
            args.instance or args.name,
            raw,
            bootstrap=bootstrap_servers(settings),
            app_id=settings.app_id,
            pseudonym_key=settings.pseudonym_key.encode(),
            dead_letter_key=dead_letter_key(settings),
        ) as source:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, source.stopping.set)
            await source.run()

    try:
        asyncio.run(run())
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return 0


def _new(args: argparse.Namespace) -> int:
    from connectors.skeleton import generate

    try:
        root = generate(args.name, Path(args.directory))
    except (ValueError, FileExistsError) as exc:
        raise UsageError(str(exc)) from None
    print(f"created {root}: pip install -e {root}[test] && pytest {root}  (see docs/connectors.md)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "connectors", help="list, run and create connectors (sources; and the delivery kinds)"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="installed sources and delivery kinds, one line each")
    listing.add_argument("--json", action="store_true", help="machine-readable output, config schemas included")
    listing.set_defaults(handler=_list)

    show = actions.add_parser("show", help="one connector or delivery kind: its settings and an example config")
    show.add_argument("name", help="as `samband connectors list` shows it")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=_show)

    run = actions.add_parser(
        "run",
        help="run a source connector until SIGTERM/SIGINT",
        description="Runs an installed source. Kafka and app id come from SAMBAND_* settings; "
        "the bookmark is kept under the instance name in <app id>-connector-state.",
    )
    run.add_argument("name", help="connector name, as `samband connectors list` shows it")
    run.add_argument("--config", required=True, help="YAML or JSON file with the connector's settings")
    run.add_argument("--instance", help="instance name (key of its bookmark); default: the connector name")
    run.set_defaults(handler=_run)

    new = actions.add_parser("new", help="create a working source connector package with conformance tests")
    new.add_argument("name", help="connector name, e.g. lib-loans")
    new.add_argument("--directory", default=".", help="where to create the package (default: here)")
    new.set_defaults(handler=_new)
