"""agents.heap_trim: memory a worker process has freed goes back to the system at each trim."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest
import structlog
from support import until

from agents import heap_trim
from agents.heap_trim import HeapTrim, find_malloc_trim

# The burst and the trim run in a process of their own: a long-lived test process's heap (holes left
# by earlier tests, another trim running) would decide what a trim there gives back.
BURST_AND_TRIM = """
import asyncio, ctypes, os
from agents.heap_trim import HeapTrim, find_malloc_trim

PAGE, BLOCK = os.sysconf("SC_PAGE_SIZE"), 64 * 1024  # below glibc's mmap threshold: from the heap

def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE

async def main():
    libc = ctypes.CDLL(None)
    libc.malloc.argtypes, libc.malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
    libc.free.argtypes, libc.free.restype = [ctypes.c_void_p], None
    # a burst: 256 MiB of blocks, touched; every other one is freed and every other one stays
    # (long-lived objects between a burst's buffers), so the freed ones merge neither with one
    # another nor with the top of the heap: their pages stay resident
    blocks = [libc.malloc(BLOCK) for _ in range(4096)]
    for block in blocks:
        ctypes.memset(block, 1, BLOCK)
    for block in blocks[0::2]:
        libc.free(block)
    freed_but_resident, trimmed, glibc = resident(), asyncio.Event(), find_malloc_trim()
    loop = asyncio.get_running_loop()

    def trim_once():
        glibc()
        loop.call_soon_threadsafe(trimmed.set)

    trim = HeapTrim(every=0.05, trim=trim_once)
    await trim.start()
    await asyncio.wait_for(trimmed.wait(), 30)
    print(freed_but_resident - resident())
    await trim.stop()

asyncio.run(main())
"""


@pytest.mark.skipif(find_malloc_trim() is None, reason="the C library is not glibc: there is no malloc_trim")
def test_memory_freed_in_the_middle_of_the_heap_goes_back_to_the_system_at_the_next_trim():
    done = subprocess.run([sys.executable, "-B", "-c", BURST_AND_TRIM], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 96 * 1024 * 1024  # of the 128 MiB freed


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
