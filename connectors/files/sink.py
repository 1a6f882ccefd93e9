"""Sink: deliveries as per-subscription batch files of JSON lines, for systems that read files.

    <directory>/<subscription>/.current.jsonl.tmp                  the open batch (never read by consumers)
    <directory>/<subscription>/<UTC time>-<n>.jsonl                 a finished batch, renamed from the temp name

Each line is one delivery record as `samband-deliveries` holds it (docs/architecture.md).
`write` appends, flushes and fsyncs before it answers `delivered`, so a delivered record
survives a crash. A batch is finished (fsync, atomic rename) when it reaches `max_bytes`, when
its first line is older than `max_age_s` (checked every `check_interval_s`), and on stop; a
temp file left by a crash is finished at start. Delivery is at least once: readers dedupe by
the line's `idempotency_key`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from pydantic import Field

from connectors.api import ConnectorConfig, Outcome, Sink, SinkRecord

TEMP_NAME = ".current.jsonl.tmp"
SUBSCRIPTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class BatchFileConfig(ConnectorConfig):
    directory: str = Field(description="one subfolder per subscription is made here")
    max_bytes: int = Field(8 << 20, ge=1, description="finish a batch file at this size")
    max_age_s: float = Field(300.0, gt=0, description="finish a batch file this long after its first line")
    check_interval_s: float = Field(1.0, gt=0, description="how often batch ages are checked")


@dataclass
class _Batch:
    file: BinaryIO
    opened: float
    size: int = 0


class BatchFileSink(Sink):
    Config = BatchFileConfig
    description = "Batch files: per-subscription JSON-lines files, atomic rename, rotation by size or age"
    config: BatchFileConfig

    async def start(self) -> None:
        self.root = Path(self.config.directory)
        self.root.mkdir(parents=True, exist_ok=True)
        self._open: dict[str, _Batch] = {}
        self._finished = 0
        for temp in self.root.glob(f"*/{TEMP_NAME}"):  # left by a crash: its lines were delivered
            self._finish_file(temp)
        self._ager = asyncio.create_task(self._finish_aged())

    async def stop(self) -> None:
        if getattr(self, "_ager", None) is not None:
            self._ager.cancel()
        for subscription in list(getattr(self, "_open", {})):
            self._finish(subscription)

    async def write(self, batch: Sequence[SinkRecord]) -> list[Outcome]:
        outcomes, touched = [], set()
        for record in batch:
            subscription = _subscription(record)
            if subscription is None:
                outcomes.append(Outcome.rejected("file.malformed_delivery", "no valid subscription id in the record"))
                continue
            current = self._open.get(subscription) or self._new_batch(subscription)
            line = record.value.rstrip(b"\n") + b"\n"
            current.file.write(line)
            current.size += len(line)
            touched.add(subscription)
            outcomes.append(Outcome.delivered())
        for subscription in touched:
            current = self._open[subscription]
            current.file.flush()
            os.fsync(current.file.fileno())
            if current.size >= self.config.max_bytes:
                self._finish(subscription)
        return outcomes

    def _new_batch(self, subscription: str) -> _Batch:
        folder = self.root / subscription
        folder.mkdir(exist_ok=True)
        batch = self._open[subscription] = _Batch(open(folder / TEMP_NAME, "ab"), time.monotonic())  # noqa: SIM115 (open until the batch is finished)
        return batch

    async def _finish_aged(self) -> None:
        while True:
            await asyncio.sleep(self.config.check_interval_s)  # a periodic timer, not a wait for a condition
            now = time.monotonic()
            for subscription, batch in list(self._open.items()):
                if now - batch.opened >= self.config.max_age_s:
                    self._finish(subscription)

    def _finish(self, subscription: str) -> None:
        batch = self._open.pop(subscription)
        batch.file.close()
        self._finish_file(Path(batch.file.name))

    def _finish_file(self, temp: Path) -> None:
        """fsync the temp file and rename it to its final, unique name (atomic within the folder)."""
        if temp.stat().st_size == 0:
            temp.unlink()
            return
        with open(temp, "rb") as file:
            os.fsync(file.fileno())
        self._finished += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        final = temp.with_name(f"{stamp}-{os.getpid()}-{self._finished:06d}.jsonl")
        os.rename(temp, final)
        directory = os.open(temp.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash
        finally:
            os.close(directory)


def _subscription(record: SinkRecord) -> str | None:
    try:
        subscription = json.loads(record.value)["subscription"]
    except (ValueError, KeyError, TypeError):
        subscription = (record.key or b"").decode("utf-8", "replace").partition("/")[0] or None
    return subscription if isinstance(subscription, str) and SUBSCRIPTION.match(subscription) else None
