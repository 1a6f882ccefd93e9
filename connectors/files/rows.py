"""Rows of a dropped file -> CloudEvents (JSON objects in Samband's profile, docs/connectors.md).

JSON lines (`.jsonl`): every non-blank line is one CloudEvent; row n = line n.
CSV (`.csv`, UTF-8, header row): columns are CloudEvent attributes (`id`, `source`, `type`,
`time`, `person`, `kommunenummer` as `;`-separated codes, `changekind`, `correctseventid`,
`sequencenumber`, `correlationid`, `subject`, `specversion` default 1.0) and `data`, a JSON
object with the payload fields; an empty cell is an absent attribute. Row n = the n-th row
after the header.

Each row is (row number, raw bytes for a dead letter, event or None, Problem or None).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from connectors.http_ingest.problems import Problem

FORMATS = (".jsonl", ".csv")


@dataclass(frozen=True)
class Row:
    number: int
    raw: bytes
    event: dict | None
    problem: Problem | None = None


def read_rows(path: Path, fmt: str) -> Iterator[Row]:
    if fmt == ".jsonl":
        yield from _jsonl_rows(path)
    else:
        yield from _csv_rows(path)


def _jsonl_rows(path: Path) -> Iterator[Row]:
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            raw = line.rstrip(b"\r\n")
            if not raw.strip():
                continue
            try:
                event = json.loads(raw)
            except (UnicodeDecodeError, ValueError):
                event = None
            if isinstance(event, dict):
                yield Row(number, raw, event)
            else:
                yield Row(number, raw, None, Problem("file.row_json", "", "the line is not a JSON object"))


def _csv_rows(path: Path) -> Iterator[Row]:
    try:
        text = path.read_text("utf-8-sig")
    except UnicodeDecodeError:
        yield Row(0, b"", None, Problem("file.encoding", "", "the file is not UTF-8"))
        return
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in next(reader, [])]
    for number, cells in enumerate(reader, start=1):
        if not any(c.strip() for c in cells):
            continue
        raw = json.dumps(dict(zip(header, cells, strict=False)), ensure_ascii=False).encode()
        if len(cells) != len(header):
            yield Row(
                number, raw, None, Problem("file.row_columns", "", f"{len(cells)} cells for {len(header)} columns")
            )
            continue
        event, problem = _event_from_cells(dict(zip(header, cells, strict=False)))
        yield Row(number, raw, event, problem)


def _event_from_cells(cells: dict[str, str]) -> tuple[dict | None, Problem | None]:
    event: dict = {"specversion": "1.0"}
    for name, value in cells.items():
        if value == "":
            continue
        if name == "data":
            try:
                event["data"] = json.loads(value)
            except ValueError:
                return None, Problem("json.field_type", "data", "the data cell is not JSON")
        elif name == "kommunenummer":
            event[name] = [k.strip() for k in value.split(";") if k.strip()]
        elif name == "sequencenumber":
            try:
                event[name] = int(value)
            except ValueError:
                return None, Problem("json.field_type", "sequencenumber", "sequencenumber must be an integer")
        else:
            event[name] = value
    return event, None
