"""The files delivery kind: a subscription's deliveries as batch files of JSON lines, for systems that read files.

    delivery: {kind: files, max_bytes: 8388608, max_age_s: 300, max_events: 10000}

    <files root>/<subscription>/.open-<writer>-<n>.jsonl.tmp     a batch being written (never read by consumers)
    <files root>/<subscription>/<UTC time>-<writer>-<n>.jsonl     a finished batch, renamed from its temp name

The files root is the operator's (SAMBAND_FILES_OUTBOUND_DIR; files delivery is refused while it
is unset), and each subscription's folder is named by its id: no subscription chooses a path.
Each line is one delivery as it leaves the bus, after the protection rule and the projection:
`{"idempotency_key": ..., "event": <CloudEvent>}` (docs/delivery.md). `write` appends, flushes
and fsyncs before it answers `delivered`, so a delivered line survives a crash. A batch is
finished (fsync, atomic rename) when it reaches `max_bytes` or `max_events` lines, when its first
line is older than `max_age_s`, before a handover of partitions (`flush`) and on stop.

Each writer (one per worker process and subscription) creates every batch under a name of its
own and locks it before the name can be seen, so a batch file whose lock is free was left by a
crash: writers finish such files at start and then every second. While the folder holds more
than the operator's quota of finished files (SAMBAND_FILES_OUTBOUND_QUOTA_BYTES), writes answer
`retry`: a subscriber that reads nothing fills no disk. Delivery is at least once: readers
dedupe by the line's `idempotency_key`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from pydantic import Field

from connectors.api import ConnectorConfig, Outcome, Sink, SinkRecord

TEMP_GLOB = ".open-*.jsonl.tmp"
ROOT_UNSET = "files delivery is not enabled on this bus: the operator sets SAMBAND_FILES_OUTBOUND_DIR"
DEFAULT_QUOTA_BYTES = 1 << 30
DELIVERED = Outcome.delivered()
MALFORMED = Outcome.rejected(
    "delivery.malformed", "delivery record is not delivery JSON with event and idempotency_key"
)


@dataclass(frozen=True)
class Written:
    lines: int  # appended and fsynced, in order
    error: str | None  # what stopped the rest: an error's type name


class BatchFileConfig(ConnectorConfig):
    max_bytes: int = Field(8 << 20, ge=64 << 10, le=1 << 30, description="finish a batch file at this size")
    max_age_s: float = Field(300.0, ge=1, le=86400, description="finish a batch file this long after its first line")
    # At least 100: each file costs two fsyncs, a rename and a folder fsync on the operator's volume.
    max_events: int | None = Field(None, ge=100, le=10_000_000, description="finish a batch file at this many lines")


class BatchFileSink(Sink):
    Config = BatchFileConfig
    description = (
        "Batch files: JSON-lines files in the subscription's own folder, atomic rename, rotation by size or age"
    )
    config: BatchFileConfig
    max_batch = 500  # one fsync per batch of heads

    @classmethod
    def refusal(cls, config: ConnectorConfig, subscription: str, bus: Mapping[str, Any] | None) -> str | None:
        if bus is not None and not bus.get("files_root"):
            return f"kind: {ROOT_UNSET}"
        return None

    async def start(self) -> None:
        root = self.context.extras.get("files_root")
        if not root or self.context.subscriber is None:
            raise RuntimeError(ROOT_UNSET)
        self.folder = Path(root) / self.context.subscriber.id
        self.quota = int(self.context.extras.get("files_quota_bytes") or DEFAULT_QUOTA_BYTES)
        self._writer = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._count = 0
        self._file: BinaryIO | None = None
        self._temp = Path()  # the open batch's name
        self._opened = 0.0
        self._size = 0
        self._lines = 0  # in the open batch
        # Every file operation runs on this one thread, in the order asked: the event loop never waits
        # for an fsync, and a write cancelled by its caller still ends before `stop` finishes the batch.
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"files-{self.context.subscriber.id}")
        self._finished_bytes = await self._on_disk(self._prepare_folder)
        self._ager = asyncio.create_task(self._every_second())

    async def stop(self) -> None:
        ager = getattr(self, "_ager", None)
        if ager is None:
            return  # never started (a sink made only to verify)
        ager.cancel()
        await asyncio.gather(ager, return_exceptions=True)
        try:
            await self._on_disk(self._finish)
        finally:
            self._disk.shutdown(wait=True)

    async def flush(self) -> None:
        await self._on_disk(self._finish)

    async def write(self, batch: Sequence[SinkRecord]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        lines = []
        for record in batch:
            line = _line(record.value)
            outcomes.append(MALFORMED if line is None else DELIVERED)
            if line is not None:
                lines.append(line)
        if not lines:
            return outcomes
        written = await self._on_disk(self._append, lines)
        if written.error is not None:  # a full or failing disk, or the quota: the lines not yet fsynced are retried
            failed = Outcome.retry("file.write_failed", written.error)
            kept = written.lines
            for i, outcome in enumerate(outcomes):
                if outcome is DELIVERED:
                    outcomes[i] = DELIVERED if kept > 0 else failed
                    kept -= 1
        return outcomes

    def _on_disk(self, work, *args):
        return asyncio.get_running_loop().run_in_executor(self._disk, work, *args)

    # --- on the disk thread -------------------------------------------------------------------

    def _prepare_folder(self) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._finish_abandoned()
        return self._measure()

    def _measure(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob("*.jsonl") if p.is_file())

    def _append(self, lines: list[bytes]) -> Written:
        """Append and fsync the lines, into as many batch files as `max_events` makes them; how many
        are durable (in order), and the error that stopped the rest."""
        if self._finished_bytes + self._size > self.quota:
            self._finished_bytes = self._measure()  # the subscriber may have taken files since
            if self._finished_bytes + self._size > self.quota:
                return Written(0, "QuotaReached")
        limit, done = self.config.max_events, 0
        try:
            while done < len(lines):
                if self._file is None:
                    self._file = self._new_temp()
                    self._opened, self._size, self._lines = time.monotonic(), 0, 0
                taken = lines[done:] if limit is None else lines[done : done + limit - self._lines]
                chunk = b"".join(taken)
                try:
                    self._file.write(chunk)
                    self._file.flush()
                    os.fsync(self._file.fileno())
                except OSError:
                    self._file.truncate(self._size)  # no half line before the next batch's
                    raise
                self._size += len(chunk)
                self._lines += len(taken)
                done += len(taken)
                if self._size >= self.config.max_bytes or (limit is not None and self._lines >= limit):
                    self._finish()
        except OSError as exc:  # the lines before are durable, and may already be in a finished file
            return Written(done, type(exc).__name__)
        return Written(done, None)

    def _new_temp(self) -> BinaryIO:
        """A new batch file, locked before its name can be seen: it is made under a name no writer
        looks for, locked, then renamed (the lock goes with the file)."""
        self._count += 1
        hidden = self.folder / f".new-{self._writer}-{self._count}"
        file = open(hidden, "xb")  # noqa: SIM115 (open until the batch is finished)
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._temp = self.folder / f".open-{self._writer}-{self._count}.jsonl.tmp"
        os.rename(hidden, self._temp)
        return file

    def _finish(self) -> None:
        file, self._file = self._file, None
        if file is None:
            return
        with file:  # closed (and unlocked) after the rename: no one finishes it twice
            file.flush()
            os.fsync(file.fileno())
            self._finished_bytes += self._size
            self._size = 0
            self._rename(self._temp)

    def _finish_abandoned(self) -> None:
        """Batch files no live writer holds (their writer crashed): their lines were delivered, so they are finished."""
        for temp in self.folder.glob(TEMP_GLOB):
            try:
                file = open(temp, "rb")  # noqa: SIM115 (closed below)
            except FileNotFoundError:
                continue  # finished by its writer meanwhile
            with file:
                try:
                    fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # another writer's open batch
                try:
                    if os.stat(temp).st_ino != os.fstat(file.fileno()).st_ino:
                        continue  # finished and a new file made under that name since we opened it
                except FileNotFoundError:
                    continue
                os.fsync(file.fileno())
                self._rename(temp)

    def _rename(self, temp: Path) -> None:
        """The temp file's final, unique name; the rename is atomic within the folder and fsynced."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        os.rename(temp, temp.with_name(f"{stamp}-{self._writer}-{secrets.token_hex(3)}.jsonl"))
        directory = os.open(temp.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash
        finally:
            os.close(directory)

    # --- the timer ----------------------------------------------------------------------------

    async def _every_second(self) -> None:
        while True:
            await asyncio.sleep(1.0)  # a periodic timer, not a wait for a condition
            with contextlib.suppress(OSError):
                await self._on_disk(self._tick)

    def _tick(self) -> None:
        if self._file is not None and time.monotonic() - self._opened >= self.config.max_age_s:
            self._finish()
        self._finish_abandoned()


def _line(value: bytes) -> bytes | None:
    """The line for one delivery: its idempotency key and the event as it leaves the bus."""
    try:
        delivery = orjson.loads(value)
        line = {"idempotency_key": delivery["idempotency_key"], "event": delivery["event"]}
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(line["idempotency_key"], str) or not isinstance(line["event"], dict):
        return None
    return orjson.dumps(line) + b"\n"
