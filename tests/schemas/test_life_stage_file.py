"""An operator's life stages (SAMBAND_LIFE_STAGES_FILE) become catalog event types; a bad file
stops the CLI with one line that names the stage and what to change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

AGE75 = """\
stages:
  - name: Age75
    doc: The person turns 75.
    rule: {kind: birthday, years: 75}
    law: helse- og omsorgstjenesteloven § 3-1
    service: hjemmetjenester
    fields: [stageDate, ageYears]
"""


def _samband(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess:
    stages = tmp_path / "stages.yaml"
    stages.write_text(text, encoding="utf-8")
    env = {**os.environ, "SAMBAND_LIFE_STAGES_FILE": str(stages)}
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_an_operators_stage_is_an_event_type_with_the_fields_it_names(tmp_path):
    shown = _samband(tmp_path, AGE75, "schemas", "show", "Age75")
    assert shown.returncode == 0, shown.stderr
    schema = json.loads(shown.stdout)
    assert schema["name"] == "Age75" and schema["namespace"] == "no.samband.events"
    assert [f["name"] for f in schema["fields"]] == ["envelope", "stageDate", "ageYears"]


def test_a_stage_named_like_a_catalog_type_is_refused_in_one_line(tmp_path):
    result = _samband(tmp_path, AGE75.replace("Age75", "Birth"), "schemas", "list")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "samband: life stage Birth has the name of a catalog type; rename it (SAMBAND_LIFE_STAGES_FILE)"
    ]


def test_an_unknown_rule_is_refused_naming_the_file_the_stage_and_the_choices(tmp_path):
    result = _samband(tmp_path, AGE75.replace("kind: birthday", "kind: jubilee"), "schemas", "list")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "stages.yaml: stage 'Age75': `rule.kind` must be one of ['birthday', 'kindergarten', 'school_year']" in line
