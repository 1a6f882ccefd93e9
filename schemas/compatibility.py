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

import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
    SchemaIncompatibilityType,
)

from schemas.catalog import CLASSIFICATIONS, ENVELOPE, Catalog, SchemaVersion

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
            problems += _incompatible(
                subject, rule, current, old, f"current version cannot read data written with released v{old.version}"
            )
            if rule == FULL:
                problems += _incompatible(
                    subject,
                    rule,
                    old,
                    current,
                    f"released v{old.version} cannot read data written with the current version",
                )
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


def _incompatible(
    subject: str, rule: str, reader: SchemaVersion, writer: SchemaVersion, consequence: str
) -> list[Problem]:
    reader_schema, writer_schema = avro.schema.parse(reader.text), avro.schema.parse(writer.text)
    result = _compatibility(reader_schema, writer_schema)
    if result is None:
        return []
    # avro's checker loses the location inside unions, so the failing fields are found by descent.
    failing = _failing_fields(reader_schema, writer_schema, "") or [("(schema)", result)]
    return [Problem(subject, path, rule, f"{_describe(found)}: {consequence}") for path, found in failing]


def _compatibility(reader: avro.schema.Schema, writer: avro.schema.Schema) -> SchemaCompatibilityResult | None:
    """avro's verdict on reader reading writer's data; None when compatible."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    return result if result.compatibility is SchemaCompatibilityType.incompatible else None


def _describe(result: SchemaCompatibilityResult) -> str:
    kinds = ", ".join(sorted({k.value for k in result.incompatibilities}))
    return f"{kinds} ({'; '.join(sorted(result.messages))})"


def _records(schema: avro.schema.Schema) -> dict[str, avro.schema.RecordSchema]:
    branches = schema.schemas if isinstance(schema, avro.schema.UnionSchema) else [schema]
    return {b.fullname: b for b in branches if isinstance(b, avro.schema.RecordSchema)}


def _failing_fields(reader, writer, prefix: str) -> list[tuple[str, SchemaCompatibilityResult]]:
    """The deepest fields whose reader type cannot read the writer's, as (path, avro's verdict)."""
    failing = []
    writer_records = _records(writer)
    for name, reader_record in _records(reader).items():
        writer_record = writer_records.get(name)
        if writer_record is None:
            continue
        for reader_field in reader_record.fields:
            path = prefix + reader_field.name
            writer_field = writer_record.fields_dict.get(reader_field.name)
            if writer_field is None:
                if not reader_field.has_default:
                    failing.append((path, _missing_default(reader_field.name)))
                continue
            result = _compatibility(reader_field.type, writer_field.type)
            if result is not None:
                failing += _failing_fields(reader_field.type, writer_field.type, path + ".") or [(path, result)]
    return failing


def _missing_default(name: str) -> SchemaCompatibilityResult:
    return SchemaCompatibilityResult(
        SchemaCompatibilityType.incompatible,
        [SchemaIncompatibilityType.reader_field_missing_default_value],
        {f"{name} has no default and the other version lacks it"},
    )


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
