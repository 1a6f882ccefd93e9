"""Small helpers for tests in every folder (import as `from support import ...`).

Test modules must not import from `conftest`: with several conftest.py files in the tree,
which one `import conftest` finds depends on collection order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import os
import random
import socket
import time
import uuid


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range: a port the kernel picked (bind to 0)
    could be given to another process's outgoing connection (a Kafka client's, of which the suite
    has many) before the server it is for binds it, as a worker's web port once was."""
    return free_port_run(1)


def free_port_run(count: int) -> int:
    """A base port with `count` consecutive free ports, below the kernel's ephemeral range: for a
    broker or cluster of the launcher, whose ports follow SAMBAND_KAFKA_PORT."""
    for _ in range(200):
        base = random.randrange(20_000, 32_000)
        with contextlib.ExitStack() as sockets:
            try:
                for offset in range(count):
                    sockets.enter_context(socket.socket()).bind(("127.0.0.1", base + offset))
            except OSError:
                continue
        return base
    raise RuntimeError("no free run of ports")


def pseudonym_key() -> bytes:
    """The pseudonym key of this test session (tests/conftest.py sets it), for what runs in-process."""
    return os.environ["SAMBAND_PSEUDONYM_KEY"].encode()


def dead_letter_key() -> bytes:
    """The dead-letter key of this test session (tests/conftest.py sets it)."""
    return base64.b64decode(os.environ["SAMBAND_DLQ_KEY"])


def open_dead_letter(value: bytes) -> bytes:
    """A dead letter's value as it was before it was sealed."""
    from connectors.dead_letters import DeadLetterSeal

    return DeadLetterSeal(dead_letter_key()).open(value)


async def until(condition, timeout: float = 10.0, every: float = 0.02, what: str = "the condition") -> None:
    """Wait for `condition()` (a value, or an awaitable one) to hold, polling `every` seconds; fail
    the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (await held if inspect.isawaitable(held := condition()) else held):
        assert time.monotonic() < deadline, f"not {what} within {timeout:g} s"
        await asyncio.sleep(every)  # poll interval inside the deadline
