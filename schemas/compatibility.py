"""The compatibility gate, on Apache Avro's own checker (`avro.compatibility`).

Rules (Confluent's names):
- event types: BACKWARD_TRANSITIVE: the current schema reads data written with every released version.
- the envelope: FULL_TRANSITIVE: additionally, every released version reads data written with the current one.
- every field, nested ones included, carries a known `classification`.
Each problem names the subject, the field path, the rule and the released version it breaks against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from schemas.catalog import AVRO_DIR, CLASSIFICATIONS, ENVELOPE, Catalog, SchemaVersion, fullname

BACKWARD = "BACKWARD_TRANSITIVE"
FULL = "FULL_TRANSITIVE"


@dataclass(frozen=True)
class Problem:
    subject: str
    field: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.subject}: field {self.field}: {self.detail} (rule {self.rule})"


def rule_for(subject: str) -> str:
    return FULL if subject == ENVELOPE else BACKWARD


def check(cat: Catalog) -> list[Problem]:
    problems: list[Problem] = []
    for subject in cat.subjects:
        current = cat.versions[subject][-1]
        problems += _classification_problems(subject, current.schema)
        rule = rule_for(subject)
        for old in (v for v in cat.versions[subject] if v.released and v is not current):
            problems += _incompatible(subject, rule, current, old, f"current version cannot read data written with released v{old.version}")
            if rule == FULL:
                problems += _incompatible(subject, rule, old, current, f"released v{old.version} cannot read data written with the current version")
    return problems


def release(cat: Catalog) -> list[SchemaVersion]:
    """Write every unreleased current version to `released/`; the caller checks compatibility first."""
    written = []
    for subject in cat.subjects:
        current = cat.versions[subject][-1]
        if not current.released:
            path = cat.root / "released" / subject / f"v{current.version}.avsc"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(current.schema, indent=2, ensure_ascii=False) + "\n", "utf-8")
            written.append(current)
    return written


def _incompatible(subject: str, rule: str, reader: SchemaVersion, writer: SchemaVersion, consequence: str) -> list[Problem]:
    result = ReaderWriterCompatibilityChecker().get_compatibility(
        avro.schema.parse(reader.text), avro.schema.parse(writer.text)
    )
    if result.compatibility is not SchemaCompatibilityType.incompatible:
        return []
    kinds = ", ".join(sorted({k.value for k in result.incompatibilities}))
    messages = "; ".join(sorted(result.messages))
    detail = f"{kinds} ({messages}): {consequence}"
    return [Problem(subject, _field_path(reader.schema, loc), rule, detail) for loc in sorted(result.locations)]


def _field_path(schema: dict, location: str) -> str:
    """Turn avro's location (`fields/3/type/fields/0`) into a field path (`previousAddress.kommunenummer`)."""
    named: dict[str, dict] = {}
    _collect_named(schema, named)
    tokens = [t for t in location.split("/") if t]
    node, path, i = schema, [], 0
    while i < len(tokens):
        node = named.get(node, node) if isinstance(node, str) else node
        token = tokens[i]
        if token == "fields" and i + 1 < len(tokens) and isinstance(node, dict) and "fields" in node:
            node = node["fields"][int(tokens[i + 1])]
            path.append(node["name"])
            i += 2
            continue
        if token.isdigit() and isinstance(node, list):
            node = node[int(token)]
        elif token in ("type", "items", "values") and isinstance(node, dict):
            node = node[token]
        i += 1
    return ".".join(path) or "(schema)"


def _collect_named(schema, named: dict[str, dict]) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _collect_named(branch, named)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed"):
            named[fullname(schema)] = schema
        for key in ("type", "items", "values"):
            if key in schema and not isinstance(schema[key], str):
                _collect_named(schema[key], named)
        for field in schema.get("fields", []):
            _collect_named(field["type"], named)


def _classification_problems(subject: str, schema, prefix: str = "") -> list[Problem]:
    problems = []
    if isinstance(schema, list):
        for branch in schema:
            problems += _classification_problems(subject, branch, prefix)
    elif isinstance(schema, dict):
        for field in schema.get("fields", []):
            path = f"{prefix}{field['name']}"
            if field.get("classification") not in CLASSIFICATIONS:
                detail = f"classification must be one of {', '.join(CLASSIFICATIONS)}"
                problems.append(Problem(subject, path, "classification", detail))
            problems += _classification_problems(subject, field["type"], f"{path}.")
        for key in ("items", "values"):
            problems += _classification_problems(subject, schema.get(key), prefix)
    return problems


def check_dir(root: Path = AVRO_DIR) -> list[Problem]:
    return check(Catalog(root))
