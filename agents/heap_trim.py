"""Gives the C memory a worker process has freed back to the system: glibc's `malloc_trim(0)`
every `SAMBAND_HEAP_TRIM_SECONDS` (off by default: docs/operations.md, "Memory").

glibc keeps what a process frees for its next allocations, and returns to the system only the top
of its heap. A worker's heap grows in steps when a burst starts (a reform day, a backfill), and
the pages freed between long-lived blocks stay resident: in a national run a trim by hand gave
back 76 MiB of a 951 MiB worker process (docs/national-scale.md, "The C heap grows in steps").
A trim hands every whole free page back (`madvise`), so the process's resident memory comes
closer to what it uses. Python's own pools of small objects are not glibc's and are not touched.

The call runs in a thread, and ctypes lets go of the interpreter lock around it. But glibc locks
each arena while it trims it, and the event loop's thread allocates from the main arena: while
that arena is trimmed, the loop waits at its first allocation or release of a block glibc does
not cache per thread (a few KiB and up). So a trim can hold the loop for up to its own length,
`samband_heap_trim_duration_seconds`; `samband_event_loop_lag_seconds` shows it. The process's
resident memory is `process_resident_memory_bytes`. Where the C library has no `malloc_trim`
(musl, macOS) there is nothing to call: the service says so once in the log and does nothing.
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


def find_malloc_trim() -> Callable[[], object] | None:
    """`malloc_trim(0)` of the C library the process runs on, or None where it has none."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


class HeapTrim(Service):
    """Trims the C heap every `every` seconds while the worker runs (0: never)."""

    def __init__(self, every: float, trim: Callable[[], object] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.every = every
        self.trim = trim if trim is not None else find_malloc_trim()

    def _timed_trim(self) -> float:
        """In the thread: the trim, and how long it took (not the wait for the thread or the loop)."""
        assert self.trim is not None
        started = time.monotonic()
        self.trim()
        return time.monotonic() - started

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
            metrics.observe_heap_trim(await asyncio.to_thread(self._timed_trim))
