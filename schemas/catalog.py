"""The event catalog: Avro named types, their released versions, and what the router needs.

Layout under `schemas/avro/`:
- `types/<fullname>.avsc`: the working tree, one named type per file. A reference to a type
  of another file uses its full name (e.g. `no.samband.common.Address`).
- `released/<subject>/v<N>.avsc`: every released version of each subject, self-contained
  (referenced types inlined). Written by `samband schemas release`, never edited.

Subjects are the envelope (`no.samband.envelope.Envelope`), one record per event type in
namespace `no.samband.events`, and one per reference type in `no.samband.reference`. An event
record is `envelope` followed by the payload fields: an event is about one person. A reference
record (a reform's kommune renumbering) is about no person and has no envelope: the bus sends it
to its subscribers itself (agents/routing/reference.py), it never comes in through ingest.
The subject is the record's full name (Confluent's RecordNameStrategy), so several event
types can share one topic and the schema id in each message says which type it is.
A subject's current version is the working tree: the latest released version when they
are equal, otherwise the next, unreleased version.

API for the router:
    cat = catalog()
    cat.event_types()                      # ["AddressProtectionChange", "Birth", ...]: person events
    cat.reference_types()                  # ["KommuneRenumbering"]
    cat.event_type_for_source("endringIBostedsadresse")   # "Move"; unknown -> "UnknownEvent"
    cat.fields("Move")                     # [FieldInfo("envelope.person", "identifier", "string", doc), ...]
    cat.projection_schema("Move", ["envelope.id", "movedDate"])   # fastavro-parsed reader schema
    cat.projection_json("Move", [...])     # the same as JSON, e.g. to register it
    cat.current("Move")                    # SchemaVersion(subject, version, id, schema, ...)
Field paths are `envelope.<field>` for envelope fields and the bare name for payload fields;
a record-typed field (an Address) is one unit with one classification.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import cast

import fastavro

from schemas.life_stages import FILE_SETTING, life_stages, stage_schema
from schemas.schema_id import canonical_text, schema_id

AVRO_DIR = Path(__file__).parent / "avro"
EVENTS_NAMESPACE = "no.samband.events"
REFERENCE_NAMESPACE = "no.samband.reference"
ENVELOPE = "no.samband.envelope.Envelope"
UNKNOWN_EVENT = "UnknownEvent"
POPULATION_RECORD = "PopulationRecord"  # a person from a register extract: teaches the bus, delivered to no one
CLASSIFICATIONS = ("identifier", "name", "address", "confidential", "ordinary")
_NAMED = ("record", "enum", "fixed")


class CatalogError(ValueError):
    """The catalog on disk is inconsistent (unknown reference, bad file, unknown field path), or a
    name is not in it. A ValueError, so a record naming a type the catalog no longer has is
    malformed (bus/malformed.py) wherever records are read."""


@dataclass(frozen=True)
class FieldInfo:
    path: str
    classification: str
    avro_type: str
    doc: str


@dataclass(frozen=True)
class SchemaVersion:
    subject: str
    version: int
    schema: dict
    released: bool

    @property
    def text(self) -> str:
        return canonical_text(self.schema)

    @property
    def id(self) -> int:
        return schema_id(self.schema)


def fullname(schema: dict) -> str:
    name = schema["name"]
    return name if "." in name else f"{schema['namespace']}.{name}"


def type_label(avro_type) -> str:
    """A short human label for a field type: `null|no.samband.common.Address`, `array<string>`, `date`."""
    if isinstance(avro_type, str):
        return avro_type
    if isinstance(avro_type, list):
        return "|".join(type_label(t) for t in avro_type)
    if avro_type.get("logicalType"):
        return avro_type["logicalType"]
    if avro_type["type"] in _NAMED:
        return fullname(avro_type)
    if avro_type["type"] == "array":
        return f"array<{type_label(avro_type['items'])}>"
    if avro_type["type"] == "map":
        return f"map<{type_label(avro_type['values'])}>"
    return type_label(avro_type["type"])


class Catalog:
    def __init__(self, root: Path = AVRO_DIR):
        self.root = Path(root)
        self.types: dict[str, dict] = {}
        for path in sorted((self.root / "types").glob("*.avsc")):
            schema = json.loads(path.read_text("utf-8"))
            if path.stem != fullname(schema):
                raise CatalogError(f"{path.name} defines {fullname(schema)}; the file must be named after the type")
            self.types[path.stem] = schema
        for stage in life_stages().values():  # derived by the bus, one fixed shape (schemas/life_stages.py)
            name = f"{EVENTS_NAMESPACE}.{stage.name}"
            if name in self.types:
                raise CatalogError(
                    f"life stage {stage.name} has the name of a catalog type; rename it ({FILE_SETTING})"
                )
            self.types[name] = stage_schema(stage)
        self.subjects = [ENVELOPE, *sorted(n for n in self.types if n.rsplit(".", 1)[0] == EVENTS_NAMESPACE)]
        self._references = sorted(n for n in self.types if n.rsplit(".", 1)[0] == REFERENCE_NAMESPACE)
        # Subscriptions, sinks and the router name a type by its short name (`Move`): one type each.
        clash = {n.rsplit(".", 1)[1] for n in self.subjects} & {n.rsplit(".", 1)[1] for n in self._references}
        if clash:
            raise CatalogError(f"{sorted(clash)}: a reference type may not have the name of an event type")
        self.subjects += self._references
        self.versions: dict[str, list[SchemaVersion]] = {s: self._versions(s) for s in self.subjects}
        self.by_id: dict[int, SchemaVersion] = {}
        for versions in self.versions.values():
            for version in versions:
                self.by_id.setdefault(version.id, version)
        self._sources = {
            source: name.rsplit(".", 1)[1]
            for name in self.subjects[1:]
            if name not in self._references
            for source in self.types[name].get("sourceTypes", [])
        }

    # --- schemas and versions -------------------------------------------------------------

    def resolve(self, schema, defined: set[str] | None = None):
        """Inline referenced catalog types (each once, at first use) so the schema stands alone."""
        defined = set() if defined is None else defined
        if isinstance(schema, str):
            if schema in self.types and schema not in defined:
                return self.resolve(self.types[schema], defined)
            return schema
        if isinstance(schema, list):
            return [self.resolve(branch, defined) for branch in schema]
        kind = schema["type"]
        if kind in _NAMED:
            defined.add(fullname(schema))
        if kind == "record":
            return {**schema, "fields": [{**f, "type": self.resolve(f["type"], defined)} for f in schema["fields"]]}
        if kind == "array":
            return {**schema, "items": self.resolve(schema["items"], defined)}
        if kind == "map":
            return {**schema, "values": self.resolve(schema["values"], defined)}
        if kind in _NAMED:
            return schema
        return {**schema, "type": self.resolve(kind, defined)}

    def _versions(self, subject: str) -> list[SchemaVersion]:
        folder = self.root / "released" / subject
        files = sorted(folder.glob("v*.avsc"), key=lambda p: int(p.stem[1:])) if folder.is_dir() else []
        versions = [SchemaVersion(subject, int(p.stem[1:]), json.loads(p.read_text("utf-8")), True) for p in files]
        if [v.version for v in versions] != list(range(1, len(versions) + 1)):
            raise CatalogError(f"released versions of {subject} must be v1..vN without gaps")
        current = self.resolve(subject)
        if not versions or canonical_text(current) != versions[-1].text:
            versions.append(SchemaVersion(subject, len(versions) + 1, current, False))
        return versions

    def subject(self, name: str) -> str:
        """Subject for an event type name (`Move`), the envelope (`Envelope`) or a full name."""
        for candidate in (
            name,
            f"{EVENTS_NAMESPACE}.{name}",
            f"{REFERENCE_NAMESPACE}.{name}",
            f"no.samband.envelope.{name}",
        ):
            if candidate in self.versions:
                return candidate
        raise CatalogError(f"no schema named {name!r}")

    def current(self, name: str) -> SchemaVersion:
        return self.versions[self.subject(name)][-1]

    def released(self, name: str) -> list[SchemaVersion]:
        return [v for v in self.versions[self.subject(name)] if v.released]

    # --- event types, fields and projections -------------------------------------------

    def event_types(self) -> list[str]:
        """The types of events about a person (in namespace no.samband.events)."""
        return [s.rsplit(".", 1)[1] for s in self.subjects[1:] if s not in self._references]

    def reference_types(self) -> list[str]:
        """The types of reference data about no person (in namespace no.samband.reference)."""
        return [s.rsplit(".", 1)[1] for s in self._references]

    def event_type_for_source(self, source_type: str) -> str:
        """The event type for a Folkeregister hendelsestype; UnknownEvent for any type not in the catalog."""
        return self._sources.get(source_type, UNKNOWN_EVENT)

    def source_types(self, event_type: str) -> list[str]:
        return list(self.types[self.subject(event_type)].get("sourceTypes", []))

    def fields(self, event_type: str) -> list[FieldInfo]:
        schema = self.current(event_type).schema
        result = []
        for field in schema["fields"]:
            if field["name"] == "envelope":
                result += [_info(f"envelope.{f['name']}", f) for f in field["type"]["fields"]]
            else:
                result.append(_info(field["name"], field))
        return result

    def projection_json(self, event_type: str, paths: Iterable[str]) -> dict:
        """A reader schema of the event type keeping only `paths` (see `fields`), self-contained."""
        keep = set(paths)
        unknown = keep - {f.path for f in self.fields(event_type)}
        if unknown:
            raise CatalogError(f"{event_type} has no field {sorted(unknown)}")
        source = self.types[self.subject(event_type)]
        envelope = self.types[ENVELOPE]
        projected_envelope = {**envelope, "fields": [f for f in envelope["fields"] if f"envelope.{f['name']}" in keep]}
        fields = []
        for field in source["fields"]:
            if field["name"] == "envelope":
                if projected_envelope["fields"]:
                    fields.append({**field, "type": projected_envelope})
            elif field["name"] in keep:
                fields.append(field)
        # Resolving after filtering re-inlines a shared type (Address) where it is first kept.
        return self.resolve({**source, "fields": fields})

    def projection_schema(self, event_type: str, paths: Iterable[str]) -> dict:
        return cast(dict, fastavro.parse_schema(self.projection_json(event_type, paths)))


def _info(path: str, field: dict) -> FieldInfo:
    return FieldInfo(path, field.get("classification", ""), type_label(field["type"]), field.get("doc", ""))


@cache
def catalog() -> Catalog:
    """The catalog shipped in this package, loaded once."""
    return Catalog()
