"""agents.heap_trim: memory a worker process has freed goes back to the system at each trim."""

from __future__ import annotations

import asyncio
import ctypes
import os
import time

import pytest
import structlog
from support import until

from agents import heap_trim
from agents.heap_trim import HeapTrim, find_malloc_trim

PAGE = os.sysconf("SC_PAGE_SIZE")
BLOCK = 64 * 1024  # below glibc's mmap threshold: served from the heap, as a burst's buffers are


def _resident() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


@pytest.mark.skipif(find_malloc_trim() is None, reason="the C library is not glibc: there is no malloc_trim")
async def test_memory_freed_in_the_middle_of_the_heap_goes_back_to_the_system_at_the_next_trim():
    libc = ctypes.CDLL(None)
    libc.malloc.argtypes, libc.malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
    libc.free.argtypes, libc.free.restype = [ctypes.c_void_p], None
    # a burst: 256 MiB of blocks, touched; every other one is freed and every other one stays
    # (long-lived objects between a burst's buffers), so the freed ones cannot merge with one
    # another or with the top of the heap: their pages stay resident. (A small block in between
    # would not do in a long-lived process: glibc serves it from an old hole elsewhere.)
    blocks = [libc.malloc(BLOCK) for _ in range(4096)]
    for block in blocks:
        ctypes.memset(block, 1, BLOCK)
    freed, pinned = blocks[0::2], blocks[1::2]
    for block in freed:
        libc.free(block)
    freed_but_resident = _resident()

    glibc, trimmed = find_malloc_trim(), []
    assert glibc is not None

    def trim_once() -> None:
        glibc()
        trimmed.append(True)  # this service's trim (another in the process counts in the metric too)

    trim = HeapTrim(every=0.05, trim=trim_once)
    await trim.start()
    try:
        await until(lambda: bool(trimmed))
        given_back = freed_but_resident - _resident()
    finally:
        await trim.stop()
        for block in pinned:
            libc.free(block)
    assert given_back > 96 * 1024 * 1024


async def test_where_the_c_library_has_no_malloc_trim_the_worker_says_so_once_and_goes_on(monkeypatch):
    class Musl:  # a C library without glibc's malloc_trim
        def __init__(self, name: object) -> None:
            pass

    monkeypatch.setattr(heap_trim.ctypes, "CDLL", Musl)
    trim = HeapTrim(every=0.01)
    with structlog.testing.capture_logs() as logged:
        await trim.start()
        try:
            await until(lambda: any(line["event"] == "worker.heap_trim_unavailable" for line in logged))
        finally:
            await trim.stop()
    assert [line["event"] for line in logged].count("worker.heap_trim_unavailable") == 1


async def test_a_trim_runs_in_a_thread_and_its_duration_is_its_own(monkeypatch):
    """The trim is a C call that may take a while on a large heap: it runs in a thread, so the loop
    goes on (unless it allocates from the arena being trimmed, which a real trim locks), and its
    duration is measured there, not with the wait for the thread or the loop."""
    ticks: list[float] = []
    trimmed: list[tuple[float, float]] = []
    observed: list[float] = []
    monkeypatch.setattr(heap_trim.metrics, "observe_heap_trim", observed.append)

    def slow_trim() -> None:
        started = time.monotonic()
        time.sleep(0.5)  # the trim's own time, in its thread
        trimmed.append((started, time.monotonic()))

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    trim = HeapTrim(every=0.01, trim=slow_trim)
    ticking = asyncio.create_task(ticker())
    await trim.start()
    try:
        await until(lambda: bool(observed) and bool(trimmed))
    finally:
        ticking.cancel()
        await trim.stop()
    started, ended = trimmed[0]
    assert sum(started < tick < ended for tick in ticks) >= 5  # on the loop it would be none
    assert observed[0] == pytest.approx(ended - started, abs=0.02)
