"""`samband kafka up | down | status | logs`: the local development broker."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict

from deploy import launcher


def _up(args: argparse.Namespace) -> int:
    config = launcher.BrokerConfig.from_env()
    before = launcher.status(config)
    started = time.monotonic()
    state = launcher.up(config)
    if before.running:
        print(f"already up: {state.describe()}")
    else:
        print(f"started in {time.monotonic() - started:.1f} s: {state.describe()}")
    return 0


def _down(args: argparse.Namespace) -> int:
    config = launcher.BrokerConfig.from_env()
    if launcher.external_bootstrap_servers():
        print("KAFKA_BOOTSTRAP_SERVERS is set: that cluster is not ours to stop")
    elif launcher.down(config):
        print("broker stopped")
    else:
        print("broker was not running")
    return 0


def _status(args: argparse.Namespace) -> int:
    state = launcher.status(launcher.BrokerConfig.from_env())
    print(json.dumps(asdict(state)) if args.json else state.describe())
    return 0 if state.running else 1


def _logs(args: argparse.Namespace) -> int:
    print(launcher.log_tail(launcher.BrokerConfig.from_env(), args.lines), end="")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    kafka = subparsers.add_parser(
        "kafka",
        help="start, stop and inspect the local Kafka broker",
        description="The local single-node KRaft broker. Settings: SAMBAND_KAFKA_HOST, SAMBAND_KAFKA_PORT, "
        "SAMBAND_KAFKA_CONTROLLER_PORT, SAMBAND_KAFKA_STATE_DIR, SAMBAND_KAFKA_JAR_CACHE. "
        "With KAFKA_BOOTSTRAP_SERVERS set, that cluster is used and nothing is started.",
    )
    actions = kafka.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("up", help="start the broker (no-op when running); returns once it answers").set_defaults(
        handler=_up
    )
    actions.add_parser("down", help="stop the broker gracefully, forcibly after a timeout").set_defaults(handler=_down)
    status = actions.add_parser("status", help="is the broker running (exit 1 when not)")
    status.add_argument("--json", action="store_true", help="running, pid, bootstrap_servers, external")
    status.set_defaults(handler=_status)
    logs = actions.add_parser("logs", help="the last lines of the broker log")
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.set_defaults(handler=_logs)
