"""The API token configuration: SAMBAND_API_TOKENS (tokens without a tenant) and the tenants'
SAMBAND_API_TOKENS_FILE. A bad configuration stops the worker with one line that never repeats a token."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from agents.subscriptions.tokens import ApiToken, TokenConfigError, load_tokens, parse_tokens

TENANT = {
    "token": "bergen-token-0123456789",
    "owner": "Bergen kommune",
    "subscriptions": {"prefix": "bergen-"},
    "kommuner": ["4601"],
    "scopes": ["subscriptions:read", "subscriptions:write"],
}


def test_api_tokens_setting_gives_tokens_that_own_nothing():
    assert parse_tokens("abc=subscriptions:read+subscriptions:write, def=subscriptions:read") == [
        ApiToken("SAMBAND_API_TOKENS#1", "abc", frozenset({"subscriptions:read", "subscriptions:write"})),
        ApiToken("SAMBAND_API_TOKENS#2", "def", frozenset({"subscriptions:read"})),
    ]
    assert parse_tokens("") == []
    assert not parse_tokens("abc=subscriptions:write")[0].owns("bergen-skole")
    assert parse_tokens("abc=subscriptions:write+subscriptions:operator")[0].owns("bergen-skole")
    with pytest.raises(TokenConfigError, match="entry 2: unknown scope") as caught:
        parse_tokens("abc=subscriptions:read,s3cret=subscriptions:admin")
    assert "s3cret" not in str(caught.value)
    with pytest.raises(TokenConfigError, match="entry 1"):
        parse_tokens("no-scopes")


def test_token_file_names_tenants_and_what_they_own(tmp_path):
    path = tmp_path / "tokens.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "bergen-helse": TENANT,
                "oslo": {**TENANT, "token": "oslo-token-0123456789", "subscriptions": {"ids": ["oslo-bibliotek"]}},
            }
        )
    )
    bergen, oslo = load_tokens("", str(path))
    assert (bergen.name, bergen.owner, bergen.kommuner) == ("bergen-helse", "Bergen kommune", frozenset({"4601"}))
    assert bergen.owns("bergen-skole") and not bergen.owns("oslo-bibliotek")
    assert oslo.owns("oslo-bibliotek") and not oslo.owns("oslo-bibliotek-2")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"bergen": {**TENANT, "token": "short"}}, "token bergen: token: String should have at least 16 characters"),
        ({"bergen": {**TENANT, "scopes": ["subscriptions:admin"]}}, "token bergen: scopes.0: Input should be"),
        (
            {"bergen": {**TENANT, "subscriptions": {"prefix": ""}}},
            "token bergen: subscriptions.prefix: String should match",
        ),
        ({"bergen": {**TENANT, "subscriptions": {}}}, "give exactly one of prefix or ids"),
        ({"bergen": {**TENANT, "colour": "blue"}}, "token bergen: colour: Extra inputs are not permitted"),
        ({"a": TENANT, "b": TENANT}, "API tokens a and b are the same token"),
        (["not", "a", "mapping"], "expected a mapping of token names to tokens"),
        # Found in review: a tenant's token could replay and read every tenant's dead letters.
        (
            {"bergen": {**TENANT, "scopes": ["subscriptions:read", "dlq:replay"]}},
            "token bergen: .*dlq:replay reach every tenant's data",
        ),
        ({"bergen": {**TENANT, "scopes": ["operations:read"]}}, "operations:read reach every tenant's data"),
    ],
)
def test_bad_token_file_is_one_line_without_the_token(tmp_path, entries, message):
    path = tmp_path / "tokens.yaml"
    path.write_text(yaml.safe_dump(entries))
    with pytest.raises(TokenConfigError, match=message) as caught:
        load_tokens("", str(path))
    assert (
        "\n" not in str(caught.value) and TENANT["token"] not in str(caught.value) and "short" not in str(caught.value)
    )


def test_worker_refuses_a_bad_token_file_in_one_line(worker_env, tmp_path):
    path = tmp_path / "tokens.yaml"
    path.write_text(f"bergen:\n  token: {TENANT['token']}\n  owner: [unclosed\n")
    run = subprocess.run(
        [sys.executable, "-m", "agents.cli", "worker"],
        env={**worker_env, "SAMBAND_API_TOKENS_FILE": str(path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("samband: SAMBAND_API_TOKENS_FILE: not valid YAML at line")
    assert TENANT["token"] not in run.stderr
