"""A connector made by `samband connectors new` passes the conformance kit unchanged."""

from __future__ import annotations

import os
import subprocess
import sys

from agents.cli import main


def test_generated_skeleton_passes_the_conformance_kit(kafka_bootstrap, tmp_path):
    assert main(["connectors", "new", "lib-loans", "--directory", str(tmp_path)]) == 0
    root = tmp_path / "lib-loans"
    assert (root / "samband_lib_loans" / "source.py").exists()
    assert 'lib-loans = "samband_lib_loans.source:LibLoansSource"' in (root / "pyproject.toml").read_text()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "6 passed" in result.stdout


def test_new_refuses_a_bad_name_and_an_existing_directory(tmp_path, capsys):
    assert main(["connectors", "new", "Bad Name!", "--directory", str(tmp_path)]) == 2
    assert "connector name" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    assert main(["connectors", "new", "taken", "--directory", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_list_shows_sources_and_delivery_kinds_with_their_config_schema(capsys):
    import json

    assert main(["connectors", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    feed = listed["sources"]["folkeregister"]
    assert feed["class"] == "connectors.folkeregister.source:FolkeregisterFeedSource"
    assert "base_url" in feed["config_schema"]["required"]
    assert set(listed["delivery kinds"]) >= {"webhook", "kafka", "files"}
    assert "url" in listed["delivery kinds"]["webhook"]["config_schema"]["required"]


def test_a_delivery_kind_is_not_run_as_a_connector(capsys, tmp_path):
    (tmp_path / "c.yaml").write_text("{}")
    assert main(["connectors", "run", "files", "--config", str(tmp_path / "c.yaml")]) == 2
    assert "delivery kind" in capsys.readouterr().err


def test_list_is_a_table_of_one_line_each(capsys):
    """Issue 18: `connectors list` printed every connector's full JSON schema."""
    assert main(["connectors", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "DESCRIPTION"]
    rows = {line.split()[0]: line for line in lines[1:] if line and not line.startswith("`")}
    assert {"folkeregister", "http-ingest", "webhook", "kafka", "files"} <= set(rows)
    assert " delivery kind " in rows["files"] and " source " in rows["folkeregister"]
    assert not any("{" in line for line in lines), "no schema in the list"


def test_show_gives_the_settings_and_an_example_that_validates(capsys):
    import yaml

    from connectors.api import delivery_kinds

    assert main(["connectors", "show", "files"]) == 0
    out = capsys.readouterr().out
    assert "max_bytes" in out and "max_age_s" in out
    example = yaml.safe_load(out.split("kind: files`):\n", 1)[1])
    assert example["kind"] == "files"
    delivery_kinds()["files"].parse_config({k: v for k, v in example.items() if k != "kind"})  # a valid config
    assert main(["connectors", "show", "nonsense"]) == 2
    assert "installed:" in capsys.readouterr().err
