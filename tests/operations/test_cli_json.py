"""Issue 18, CLI manners: every command that prints data takes `--json` and then prints JSON on
stdout (one document, or one object per line for the audit log), against a real broker."""

from __future__ import annotations

import json

import pytest
from samband_cli import samband
from support import unique_name

pytestmark = pytest.mark.kafka

# Each command that prints data. `status` and `privacy scan` exit 1 when they find a problem;
# that is their answer, not a failure to print.
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


@pytest.mark.parametrize("command", DATA_COMMANDS, ids=" ".join)
async def test_a_data_command_prints_json_with_json(kafka_bootstrap, command):
    env = {"SAMBAND_APP_ID": unique_name("cli-json"), "SAMBAND_DEVELOPMENT": "true"}
    done = await samband(kafka_bootstrap, *command, "--json", env=env, timeout=120)
    assert done.code in (0, 1), done.stderr
    json.loads(done.stdout)


async def test_the_audit_log_is_one_json_object_per_line(kafka_bootstrap):
    env = {"SAMBAND_APP_ID": unique_name("cli-json")}
    done = await samband(kafka_bootstrap, "audit", "--json", env=env)
    assert done.code == 0, done.stderr
    assert all(isinstance(json.loads(line), dict) for line in done.stdout.splitlines())
