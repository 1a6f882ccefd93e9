"""The `samband` command line.

Each command group lives in its own module under `agents/commands/` and adds itself
with `register(subparsers)`; a handler returns the process exit code.

Exit codes, the same for every command: 0 done (a check passed), 1 a check failed (`status`
unhealthy, `privacy scan` findings, `subscriptions validate` errors, ...), 2 the command cannot
run (wrong use, bad settings, Kafka unreachable), 130 interrupted. A one-shot command prints
only its own lines: the Kafka client's log lines are shown with `samband --verbose ...`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from agents.config import SettingsError
from bus.topics import TopicLayoutError
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
    "agents.commands.person",
]


# Commands that run until stopped and log as a service does (agents/logging.py); the others are
# one-shot commands whose libraries keep quiet unless --verbose.
SERVICES = frozenset({"worker", "demo", "simulate", "kafka", "connectors"})
LIBRARY_LOGGERS = ("aiokafka", "kafka", "faust", "mode", "librdkafka")


class UsageError(Exception):
    """A command was called wrongly; the message says how to call it."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samband", description="Samband: citizen life events for Norway's municipal systems."
    )
    parser.add_argument(
        "--verbose", action="store_true", help="also show the Kafka client's and other libraries' log lines"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from aiokafka.errors import KafkaError

    from bus.clients import KafkaSecurityError
    from deploy.secure import SecureSetupError
    from schemas.catalog import CatalogError
    from schemas.life_stages import LifeStageError

    KAFKA_SETUP = (KafkaSecurityError, SecureSetupError)

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose and args.command not in SERVICES:
        for name in LIBRARY_LOGGERS:  # the command says what went wrong in its own words
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    try:
        return int(args.handler(args) or 0)
    except (
        SettingsError,
        LauncherError,
        UsageError,
        CatalogError,
        LifeStageError,
        TopicLayoutError,
        *KAFKA_SETUP,
    ) as exc:
        print(f"samband: {exc}", file=sys.stderr)
        return 2
    except (KafkaError, TimeoutError) as exc:  # TimeoutError: a read of a topic that stopped answering
        print(f"samband: Kafka failed ({type(exc).__name__}) at {_bootstrap()}; is it running? "
              "(`samband kafka status`; details with `samband --verbose ...`)", file=sys.stderr)  # fmt: skip
        return 2
    except KeyboardInterrupt:
        return 130


def _bootstrap() -> str:
    from agents.config import bootstrap_servers, get_settings

    try:
        return bootstrap_servers(get_settings())
    except Exception:  # the settings themselves are at fault: said elsewhere
        return "the configured bootstrap servers"


if __name__ == "__main__":
    # `python -m agents.cli`: run the imported module's main, so that the commands' UsageError
    # (agents.cli.UsageError) is the class main catches, not a copy made for __main__.
    from agents.cli import main as imported_main

    sys.exit(imported_main())
