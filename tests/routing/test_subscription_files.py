"""Subscriptions as YAML files: every problem reported per file, and nothing applied unless all are valid."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml
from subscription_factory import subscription

from agents.subscriptions.files import load_dir
from agents.subscriptions.store import read_all
from bus.topics import topic_names


def _valid(sub_id: str) -> dict:
    return json.loads(subscription(sub_id, ["0301"], ["Death"], {"Death": ["deathDate"]}).to_json())


def _write(directory, files: dict[str, str]) -> None:
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)


def test_every_invalid_file_is_named_with_its_problem(tmp_path):
    no_basis = {**_valid("uten-hjemmel"), "legal_basis": ""}
    _write(
        tmp_path / "subs",
        {
            "ok.yaml": yaml.safe_dump(_valid("gyldig")),
            "no-basis.yaml": yaml.safe_dump(no_basis),
            "broken.yml": "id: [unclosed\n",
            "twin.yaml": yaml.safe_dump(_valid("gyldig")),
            "notes.txt": "not a subscription file, ignored",
        },
    )
    subs, errors = load_dir(tmp_path / "subs")
    assert [s.id for s in subs] == ["gyldig"]
    assert any(e.startswith("broken.yml: not valid YAML at line") for e in errors)
    assert any(e.startswith("no-basis.yaml: legal_basis") for e in errors)
    assert "twin.yaml: id gyldig is also used by ok.yaml" in errors
    assert len(errors) == 3


async def test_apply_writes_nothing_when_one_file_is_invalid(kafka_bootstrap, worker_env, tmp_path):
    _write(
        tmp_path / "subs",
        {
            "a.yaml": yaml.safe_dump(_valid("a-gyldig")),
            "b.yaml": yaml.safe_dump({**_valid("b-ugyldig"), "kommuner": ["9999"]}),
        },
    )
    run = subprocess.run(
        [sys.executable, "-m", "agents.cli", "subscriptions", "apply", str(tmp_path / "subs")],
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "b.yaml: kommuner" in run.stderr and "nothing applied" in run.stderr
    assert await read_all(kafka_bootstrap, topic_names(worker_env["SAMBAND_APP_ID"]).subscriptions) == {}


def _apply(env, directory, *flags) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", "subscriptions", "apply", str(directory), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_apply_prints_its_plan_and_prunes_only_when_asked(kafka_bootstrap, worker_env, tmp_path):
    topic = topic_names(worker_env["SAMBAND_APP_ID"]).subscriptions
    first = tmp_path / "first"
    _write(first, {"a.yaml": yaml.safe_dump(_valid("skole-a")), "b.yaml": yaml.safe_dump(_valid("skole-b"))})
    run = _apply(worker_env, first)
    assert run.returncode == 0, run.stderr
    assert "created 2: skole-a, skole-b" in run.stdout

    # skole-a changes, skole-b is left out, skole-c is new.
    second = tmp_path / "second"
    _write(
        second,
        {
            "a.yaml": yaml.safe_dump({**_valid("skole-a"), "kommuner": ["4601"]}),
            "c.yaml": yaml.safe_dump(_valid("skole-c")),
        },
    )
    dry = _apply(worker_env, second, "--prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert (
        "created 1: skole-c" in dry.stdout and "changed 1: skole-a" in dry.stdout and "deleted 1: skole-b" in dry.stdout
    )
    assert set(await read_all(kafka_bootstrap, topic)) == {"skole-a", "skole-b"}  # a dry run writes nothing

    kept = _apply(worker_env, second)
    assert "kept 1: skole-b" in kept.stdout and "use --prune" in kept.stdout
    assert set(await read_all(kafka_bootstrap, topic)) == {"skole-a", "skole-b", "skole-c"}
    assert json.loads((await read_all(kafka_bootstrap, topic))["skole-a"])["kommuner"] == ["4601"]

    pruned = _apply(worker_env, second, "--prune")
    assert "unchanged 2: skole-a, skole-c" in pruned.stdout and "deleted 1: skole-b" in pruned.stdout
    assert set(await read_all(kafka_bootstrap, topic)) == {"skole-a", "skole-c"}


def test_a_kafka_subscription_takes_the_pause_switch_and_retry_schedule(tmp_path):
    kafka = {**_valid("kafka-sub"), "delivery": {"kind": "kafka", "paused": True, "retry_schedule": [5, 60]}}
    _write(
        tmp_path / "subs",
        {
            "kafka.yaml": yaml.safe_dump(kafka),
            "bad.yaml": yaml.safe_dump({**_valid("bad-sub"), "delivery": {"kind": "kafka", "retry_schedule": [-1]}}),
        },
    )
    subs, errors = load_dir(tmp_path / "subs")
    assert [(s.id, s.delivery.paused, s.delivery.retry_schedule) for s in subs] == [("kafka-sub", True, [5.0, 60.0])]
    assert len(errors) == 1 and errors[0].startswith("bad.yaml: delivery")
