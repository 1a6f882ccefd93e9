"""Source: a drop folder of CSV / JSON-lines files (connectors/files/rows.py), one event per row.

    <directory>/            systems drop `*.csv` / `*.jsonl` here (write under another name, e.g.
                            `.x.tmp`, then rename: names starting with `.` are ignored)
    <directory>/processing/ a file is renamed here, under a unique `<id>.<name>`, before it is read
    <directory>/done/       and here once every row is sent or dead-lettered

Rows are sent in chunks of `chunk_rows`; after each chunk is durable the bookmark
`{"file": <processing name>, "row": <last row sent>}` is saved. A restart first finishes the
file left in `processing/`, after its bookmarked row: a crash re-sends at most one chunk
(same event ids, deduplicated by ingest), and loses nothing. A bad row is dead-lettered
(reason code; the message names the file and row number, never the row's content) and the
rest of the file flows. One source instance per drop folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from pathlib import Path

from pydantic import Field

from connectors.api import ConnectorConfig, OutputRecord, Source
from connectors.dead_letters import DeadLetter
from connectors.files.rows import FORMATS, Row, read_rows
from connectors.http_ingest.events import EventEncoder
from connectors.http_ingest.problems import Problem, Refused
from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.registry import CatalogRegistry

ROW_HEADER = "samband-file-row"


class DropFolderConfig(ConnectorConfig):
    directory: str = Field(description="the drop folder; processing/ and done/ are made inside it")
    chunk_rows: int = Field(500, ge=1, le=100_000, description="rows sent per bookmark")
    poll_interval_s: float = Field(1.0, gt=0, description="wait when the folder is empty")
    ignore_unknown: bool = Field(
        False,
        description="drop attributes (columns) and data fields the profile does not know instead of refusing "
        "the row (cloudevent.unknown_attribute, data.unknown_field)",
    )


class DropFolderSource(Source):
    """CSV / JSON-lines files dropped in a folder -> samband-ingest, a row at a time, resumable mid-file."""

    Config = DropFolderConfig
    description = "Drop folder: CSV / JSON-lines files of CloudEvents -> samband-ingest"
    config: DropFolderConfig

    async def start(self) -> None:
        self.inbox = Path(self.config.directory)
        self.processing, self.done = self.inbox / "processing", self.inbox / "done"
        for folder in (self.processing, self.done):
            folder.mkdir(parents=True, exist_ok=True)
        self.encoder = EventEncoder(Codec(CatalogRegistry(catalog())), self.config.ignore_unknown)

    async def run(self) -> None:
        bookmark = await self.context.state.load() or {}
        for path in sorted(self.processing.iterdir(), key=lambda p: p.stat().st_mtime):  # left by a crash
            start = bookmark.get("row", 0) if bookmark.get("file") == path.name else 0
            self.log.info("files.resume", file=path.name, after_row=start)
            await self._ingest_file(path, start)
        while not self.stopping.is_set():
            path = self._pick_up()
            if path is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), self.config.poll_interval_s)
                continue
            await self._ingest_file(path, 0)

    def _pick_up(self) -> Path | None:
        """The oldest dropped file, renamed atomically into processing/; None when there is none."""
        candidates = [
            p for p in self.inbox.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix in FORMATS
        ]
        for path in sorted(candidates, key=lambda p: (p.stat().st_mtime, p.name)):
            target = self.processing / f"{uuid.uuid4().hex[:12]}.{path.name}"
            try:
                os.rename(path, target)
            except FileNotFoundError:  # gone meanwhile
                continue
            self.log.info("files.picked_up", file=target.name)
            return target
        return None

    async def _ingest_file(self, path: Path, after_row: int) -> None:
        chunk: list[Row] = []
        sent = dead = 0
        for row in read_rows(path, path.suffix):
            if row.number <= after_row:
                continue
            chunk.append(row)
            if len(chunk) >= self.config.chunk_rows:
                sent, dead = _add((sent, dead), await self._send(path.name, chunk))
                chunk = []
                if self.stopping.is_set():  # the file stays in processing/; a restart resumes after the bookmark
                    self.log.info("files.paused", file=path.name, events=sent, dead_letters=dead)
                    return
        if chunk:
            sent, dead = _add((sent, dead), await self._send(path.name, chunk))
        os.rename(path, self.done / path.name)
        self.log.info("files.done", file=path.name, events=sent, dead_letters=dead)

    async def _send(self, name: str, rows: list[Row]) -> tuple[int, int]:
        records, letters = [], []
        for row in rows:
            where = [(ROW_HEADER, f"{name}:{row.number}".encode())]
            try:
                key, value = self._encode(row)
                records.append(OutputRecord(key, value, where))
            except Refused as refused:
                problem = refused.problems[0]
                codes = ", ".join(f"{p.field or 'row'}: {p.code}" for p in refused.problems)
                letter = DeadLetter(problem.code, f"file {name} row {row.number} refused ({codes})"[:500], "source")
                key = row.event.get("id") if row.event else None
                letters.append(
                    self.context.dead_letters.send(key.encode() if isinstance(key, str) else None, row.raw, letter)
                )
        await asyncio.gather(self.context.output.send(records), *letters)
        await self.context.state.save({"file": name, "row": rows[-1].number})  # only after the chunk is durable
        self.log.info(
            "files.chunk", file=name, last_row=rows[-1].number, events=len(records), dead_letters=len(letters)
        )
        return len(records), len(letters)

    def _encode(self, row: Row) -> tuple[str, bytes]:
        if row.problem is not None:
            raise Refused([row.problem])
        event_type = self.encoder.event_type(row.event)
        if event_type is None:
            raise Refused([Problem("event.unknown_type", "type", "type names no catalog event type")])
        value = self.encoder.encode(event_type, row.event)
        return row.event["id"], value


def _add(totals: tuple[int, int], more: tuple[int, int]) -> tuple[int, int]:
    return totals[0] + more[0], totals[1] + more[1]
