"""The `samband` command line.

Each command group lives in its own module under `agents/commands/` and adds itself
with `register(subparsers)`; a handler returns the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from agents.config import SettingsError
from deploy.launcher import LauncherError

# Command-group modules, in the order `samband --help` lists them.
COMMAND_MODULES = [
    "agents.commands.kafka",
    "agents.commands.worker",
    "agents.commands.demo",
    "agents.commands.simulate",
    "agents.commands.schemas",
    "agents.commands.subscriptions",
    "agents.commands.audit",
    "agents.commands.topics_and_lag",
    "agents.commands.status",
    "agents.commands.trace",
    "agents.commands.connectors",
    "agents.commands.dlq",
    "agents.commands.privacy",
]


class UsageError(Exception):
    """A command was called wrongly; the message says how to call it."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samband", description="Samband: citizen life events for Norway's municipal systems."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (SettingsError, LauncherError, UsageError) as exc:
        print(f"samband: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
