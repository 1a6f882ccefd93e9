"""Stable schema ids: the same schema gets the same id on every machine and after every restart.

The id is the first 31 bits of SHA-256 over the schema's canonical text (compact JSON, keys
sorted). Unlike Avro's Parsing Canonical Form, this text keeps defaults, docs and the
`classification` attribute: two schemas that differ in a default resolve differently as
readers, so a registry must keep them apart.
"""

from __future__ import annotations

import hashlib
import json


def canonical_text(schema: dict | list | str) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def schema_id(schema: dict | list | str) -> int:
    digest = hashlib.sha256(canonical_text(schema).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
