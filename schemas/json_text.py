"""Reading JSON that comes from outside the bus: one parser for every endpoint and for ingest.

orjson refuses, as invalid JSON, what the standard library lets through to fail later: nesting
deeper than 1024 levels (json raises RecursionError), lone surrogates (which no encoder can
write back), NaN and Infinity. Its error is a ValueError whose message names a position, never
the content.
"""

from __future__ import annotations

import orjson

JSONError = orjson.JSONDecodeError  # a subclass of ValueError


def loads(data: bytes | bytearray | str):
    return orjson.loads(data)
