"""Run the `samband` CLI as a subprocess (as an operator or cron would) against a given broker."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)


async def samband(bootstrap: str, *args: str, timeout: float = 60.0, env: dict[str, str] | None = None) -> CliResult:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agents.cli",
        *args,
        env={**os.environ, "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": bootstrap, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"samband {' '.join(args)} did not finish within {timeout:.0f} s") from None
    return CliResult(process.returncode, stdout.decode(), stderr.decode())
