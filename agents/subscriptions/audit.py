"""The audit log of subscription writes and person reports: the compacted topic `<app id>-audit`, one record per write.

Each record says who (the token's name and owner, or the OS user for the CLI), what (action and
subscription id), when, through what (api, cli) and the outcome (`ok` or the error code). Never
the token. A person's access report (`person_report`) is logged with the person's pseudonym, so
the reports asked for one person can be found; never an identity number. Keys are the write time in nanoseconds plus a random part, so
they never collide and compaction keeps every entry; the single partition keeps them in order.
"""

from __future__ import annotations

import json
import os
import pwd
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from agents.subscriptions import store
from bus.topics import AUDIT, ensure_topics


def os_user() -> str:
    """The name of the process's real user id (not $USER, which anyone can set)."""
    return pwd.getpwuid(os.getuid()).pw_name


@dataclass
class AuditLog:
    bootstrap: str
    topic: str
    _ensured: bool = False

    async def record(
        self, *, name: str, owner: str | None, action: str, subscription: str | None, outcome: str, via: str
    ) -> None:
        await self.record_all(
            [
                {
                    "name": name,
                    "owner": owner,
                    "action": action,
                    "subscription": subscription,
                    "outcome": outcome,
                    "via": via,
                }
            ]
        )

    async def record_all(self, entries: list[dict]) -> None:
        if not entries:
            return
        if not self._ensured:
            await ensure_topics(self.bootstrap, {self.topic: AUDIT.configs()}, AUDIT.partition_count())
            self._ensured = True
        records = []
        for entry in entries:
            now = time.time_ns()
            at = datetime.fromtimestamp(now / 1e9, UTC).isoformat(timespec="milliseconds")
            records.append((f"{now:020d}-{uuid.uuid4().hex}", json.dumps({"time": at, **entry}).encode()))
        await store.write(self.bootstrap, self.topic, records)

    async def entries(self) -> list[dict]:
        """Every entry, oldest first."""
        return [json.loads(value) for value in (await store.read_all(self.bootstrap, self.topic)).values()]
