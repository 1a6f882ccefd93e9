"""Event documents -> catalog records in the Avro wire format: the feed source's CPU work.

`encode_documents` is a plain function of bytes so that the source can run it in worker
processes (`encode_workers`): one page is mapped and encoded there while the source's event
loop fetches the next page and produces the previous one. Each process builds its codec once.
"""

from __future__ import annotations

import os
import threading
import time
from functools import cache

import orjson

from connectors.dead_letters import DeadLetter
from connectors.folkeregister.mapping import Unmappable, to_record
from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.registry import CatalogRegistry

Encoded = tuple[str, bytes] | DeadLetter  # (event id, wire-format value) or why the document cannot be sent
AVRO_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def encode_documents(documents: list[bytes]) -> list[Encoded]:
    return [encode_document(raw) for raw in documents]


def encode_document(raw: bytes) -> Encoded:
    try:
        document = orjson.loads(raw)
        if not isinstance(document, dict):
            raise ValueError
    except ValueError:
        return _dead("source.malformed_document", "event document is not a JSON object")
    try:
        event_type, record = to_record(document)
        schema_id, named_unions = _writer(event_type)
        for field, name in named_unions:
            if record[field] is not None:
                record[field] = (name, record[field])
        return record["envelope"]["id"], _codec().encode(record, schema_id)
    except Unmappable as exc:
        return _dead(exc.reason, str(exc))
    except (ValueError, TypeError):  # fastavro: a value of the wrong type; its text may quote data
        return _dead("source.encode_failed", f"{document.get('hendelsesdokument')} does not fit its schema")


@cache
def _codec() -> Codec:
    return Codec(CatalogRegistry(catalog()))


@cache
def _writer(event_type: str) -> tuple[int, tuple[tuple[str, str], ...]]:
    """The current schema id, and the top-level fields typed ["null", <named type>] with that type's name.

    Such a value goes to fastavro as (name, value): otherwise it matches the value against each
    branch by validating it whole, a third of the time it takes to encode a Move.
    """
    schema_id = _codec().current_id(event_type)
    named = []
    for field in _codec().writer_schema(schema_id)["fields"]:
        branches = field["type"]
        if isinstance(branches, list) and len(branches) == 2 and branches[0] == "null":
            other = branches[1]
            name = other.get("name") if isinstance(other, dict) else other
            if name and name not in AVRO_PRIMITIVES:
                named.append((field["name"], name))
    return schema_id, tuple(named)


def start_worker(parent: int) -> None:
    """Initialiser of a worker process: build the codec now, and exit when the source is gone.

    A source killed outright (SIGKILL) cannot stop its pool; an orphaned worker would wait forever.
    """

    def exit_with_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=exit_with_parent, daemon=True).start()
    _codec()


def _dead(reason: str, message: str) -> DeadLetter:
    return DeadLetter(reason=reason, message=message, stage="source")
