"""Codec throughput: Samband's codec vs raw fastavro on the same record, in the same run.

    .venv/bin/python bench/bench_codec.py [--events N] [--rounds R]

The record is the envelope with a typical move payload (schemas.examples, synthetic person).
"Ours" is Codec.encode + Codec.decode (Confluent header, cached schema and header, id lookup);
"raw" is fastavro.schemaless_writer + schemaless_reader with the same parsed schema. Each side
runs R rounds interleaved; the best round counts. Target: ours >= 0.8x raw.
Decoding alone is measured as well: the codec reads with a reader compiled per writer schema
(schemas/compiled_reader.py), the router's hot path.
"""

from __future__ import annotations

import argparse
import time
from io import BytesIO

import fastavro

from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.examples import example
from schemas.registry import CatalogRegistry


def ours(codec: Codec, schema_id: int, record: dict, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        codec.decode(codec.encode(record, schema_id))
    return n / (time.perf_counter() - start)


def raw(schema: dict, record: dict, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        out = BytesIO()
        fastavro.schemaless_writer(out, schema, record)
        fastavro.schemaless_reader(BytesIO(out.getvalue()), schema, None)
    return n / (time.perf_counter() - start)


def ours_decode(codec: Codec, message: bytes, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        codec.decode(message)
    return n / (time.perf_counter() - start)


def raw_decode(schema: dict, body: bytes, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fastavro.schemaless_reader(BytesIO(body), schema, None)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    record = example("Move")
    codec = Codec(CatalogRegistry(catalog()))
    schema_id = codec.current_id("Move")
    schema = fastavro.parse_schema(catalog().current("Move").schema)
    assert codec.decode(codec.encode(record, schema_id)) == record

    message = codec.encode(record, schema_id)
    best_ours = best_raw = best_ours_decode = best_raw_decode = 0.0
    for _ in range(args.rounds):
        best_raw = max(best_raw, raw(schema, record, args.events))
        best_ours = max(best_ours, ours(codec, schema_id, record, args.events))
        best_raw_decode = max(best_raw_decode, raw_decode(schema, message[5:], args.events))
        best_ours_decode = max(best_ours_decode, ours_decode(codec, message, args.events))

    size = len(codec.encode(record, schema_id))
    print(f"Move event ({size} bytes incl. 5-byte header), {args.events} events x {args.rounds} rounds, best round")
    print(f"{'codec':<34} {'events/s':>12}")
    print(f"{'raw fastavro write+read':<34} {best_raw:>12,.0f}")
    print(f"{'samband Codec encode+decode':<34} {best_ours:>12,.0f}")
    print(f"{'ratio (ours / raw)':<34} {best_ours / best_raw:>12.2f}   target >= 0.80")
    print(f"{'raw fastavro read':<34} {best_raw_decode:>12,.0f}")
    print(f"{'samband Codec decode (compiled)':<34} {best_ours_decode:>12,.0f}")
    print(f"{'ratio (ours / raw)':<34} {best_ours_decode / best_raw_decode:>12.2f}")


if __name__ == "__main__":
    main()
