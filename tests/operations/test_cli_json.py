"""Issue 18, CLI manners: every command that prints data takes `--json` and then prints JSON on
stdout (one document, or one object per line for the audit log) with the exit code of the plain
command, against a real broker and a bus with a subscription."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from samband_cli import samband
from support import unique_name

pytestmark = pytest.mark.kafka

DEMO_SUBSCRIPTION = Path(__file__).parents[2] / "deploy" / "demo" / "subscriptions" / "bergen-helsestasjon.yaml"
# Each command that prints data. `status` and `privacy scan` exit 1 when they find a problem:
# that is their answer, with or without --json.
DATA_COMMANDS = [
    ["status"],
    ["topics"],
    ["lag"],
    ["dlq", "list"],
    ["trace", "no-such-event"],
    ["subscriptions", "list"],
    ["connectors", "list"],
    ["connectors", "show", "http-ingest"],
    ["schemas", "list"],
    ["schemas", "check"],
    ["privacy", "scan"],
    ["kafka", "status"],
]


@pytest.fixture(scope="module")
async def bus_env(kafka_bootstrap, tmp_path_factory):
    """An app id with one subscription applied through the CLI (so the audit log has an entry)."""
    env = {"SAMBAND_APP_ID": unique_name("cli-json"), "SAMBAND_DEVELOPMENT": "true"}
    folder = tmp_path_factory.mktemp("subscriptions")
    shutil.copy(DEMO_SUBSCRIPTION, folder / DEMO_SUBSCRIPTION.name)
    applied = await samband(kafka_bootstrap, "subscriptions", "apply", str(folder), env=env)
    assert applied.code == 0, applied.stderr
    return env


@pytest.mark.parametrize("command", DATA_COMMANDS, ids=" ".join)
async def test_a_data_command_prints_json_with_json_and_the_same_exit_code(kafka_bootstrap, bus_env, command):
    plain = await samband(kafka_bootstrap, *command, env=bus_env, timeout=120)
    done = await samband(kafka_bootstrap, *command, "--json", env=bus_env, timeout=120)
    assert done.code == plain.code and done.code in (0, 1), done.stderr
    json.loads(done.stdout)


async def test_subscriptions_list_json_holds_each_subscription_in_full(kafka_bootstrap, bus_env):
    done = await samband(kafka_bootstrap, "subscriptions", "list", "--json", env=bus_env)
    [subscription] = done.json()
    assert subscription["id"] == "bergen-helsestasjon" and subscription["legal_basis"]


async def test_the_audit_log_is_one_json_object_per_line(kafka_bootstrap, bus_env):
    done = await samband(kafka_bootstrap, "audit", "--json", env=bus_env)
    assert done.code == 0, done.stderr
    entries = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(e["action"], e["subscription"], e["via"]) for e in entries] == [("create", "bergen-helsestasjon", "cli")]
