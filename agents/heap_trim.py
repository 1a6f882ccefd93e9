"""Freed C memory given back to the system: glibc's `malloc_trim(0)` every `SAMBAND_HEAP_TRIM_SECONDS`.

glibc keeps what a process frees for its next allocations and returns to the system only the top
of its heap. A worker's heap grows in steps when a burst starts (a reform day, a backfill: Kafka
fetch responses and record batches of more than 128 KiB come from the heap once glibc has raised
its mmap threshold) and the pages freed between long-lived blocks stay resident: in a national
run a trim gave back 76 MiB of a 951 MiB worker process (docs/national-scale.md). A trim hands
those pages back (`madvise`), so the process's resident memory follows what it uses.

The call runs in a thread: ctypes lets go of the interpreter lock around it, so the event loop
goes on meanwhile (only a C allocation in the arena being trimmed waits for it). How long each
took is `samband_heap_trim_seconds`; the process's resident memory is
`process_resident_memory_bytes`. Where the C library has no `malloc_trim` (musl, macOS) there
is nothing to call: the service says so once in the log and does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import time
from collections.abc import Callable
from typing import Any

import structlog
from mode import Service

from agents import metrics

log = structlog.get_logger(__name__)


def glibc_trim() -> Callable[[], object] | None:
    """`malloc_trim(0)` of the C library the process runs on, or None where it has none."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


class HeapTrim(Service):
    """Trims the C heap every `every` seconds while the worker runs (0: never)."""

    def __init__(self, every: float, trim: Callable[[], object] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.every = every
        self.trim = trim if trim is not None else glibc_trim()

    @Service.task
    async def _trim(self) -> None:
        if not self.every:
            return
        if self.trim is None:
            log.info("worker.heap_trim_unavailable", reason="the C library has no malloc_trim")
            return
        while not self.should_stop:
            await self.sleep(self.every)
            if self.should_stop:
                return
            started = time.monotonic()
            await asyncio.to_thread(self.trim)
            metrics.observe_heap_trim(time.monotonic() - started)
