"""A named worker (SAMBAND_WORKER_NAME) starts only when no other live worker holds its name.

The name makes the worker's consumers static members of their groups (bus/batches.py). A member
that joins with a name is taken as that name's new incarnation, and the coordinator drops the one
before it. That is what a restart after a kill needs. Two live workers with one name, though,
would drop each other over and over (aiokafka's heartbeats do not carry the name, so neither is
fenced), and both would handle the same partitions: a person's events out of order, and state
written by both.

At start, a process locks `<data dir>/names/<name>` for as long as it runs (flock) and reads the
client id that the last process to hold the lock left there: its predecessor, not running, since
the lock was free. A member of the stages' groups holding the name is taken as that predecessor
only when its client id is that one (client ids carry a token drawn per process, bus/batches.py).
Any other holder may be alive: the worker exits with code 2 and says who holds the name. If that
worker is gone, its membership ends with its session timeout, and a start then succeeds.

While running, a stage that loses its membership looks who holds its name before it joins again,
and stops if it is another process (bus/batches.py, NameTaken).
"""

from __future__ import annotations

import asyncio
import fcntl
from pathlib import Path
from typing import IO

from agents.config import Settings, SettingsError, bootstrap_servers
from agents.stage_runtime import STAGES, stage_group
from bus.batches import process_client_id, process_member_name
from bus.inspector import BrokerUnreachable, GroupMember, GroupsUndescribed, KafkaInspector

_held: IO | None = None  # this process's lock on its name: released when it exits, however it exits
CHECK_FOR = 30.0  # seconds the check tries to reach the broker before giving up


async def claim_worker_name(settings: Settings) -> None:
    """Hold this process's name, or raise SettingsError saying who may hold it."""
    global _held
    if not settings.worker_name:
        return
    name = process_member_name(settings.worker_name)
    lock = _lock(Path(settings.data_dir) / "names" / name)
    predecessor = lock.read().strip()
    for member in await _members(settings):
        if member.instance == name and member.client_id != predecessor:
            lock.close()
            raise SettingsError(
                f"SAMBAND_WORKER_NAME: the name {name!r} is held in {member.group} by {member.client_id} "
                f"(host {member.host}). Give each worker a name of its own; if that worker is gone, its "
                f"membership ends after SAMBAND_BROKER_SESSION_TIMEOUT ({settings.broker_session_timeout:g} s): "
                "start this one again after that"
            )
    lock.seek(0)
    lock.truncate()
    lock.write(process_client_id())
    lock.flush()
    _held = lock


def _lock(path: Path) -> IO:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise SettingsError(
            f"SAMBAND_WORKER_NAME: a running process on this host holds the name {path.name!r} "
            f"(its lock {path}); give each worker a name of its own"
        ) from None
    lock.seek(0)
    return lock


async def _members(settings: Settings) -> list[GroupMember]:
    """The members of the stages' groups; the broker retried for CHECK_FOR seconds."""
    groups = [stage_group(settings.app_id, stage) for stage in STAGES]
    deadline = asyncio.get_running_loop().time() + CHECK_FOR
    while True:
        try:
            async with KafkaInspector(bootstrap_servers(settings)) as kafka:
                listed = set(await kafka.groups(f"{settings.app_id}-"))
                return await kafka.group_members([group for group in groups if group in listed])
        except GroupsUndescribed as exc:
            raise SettingsError(
                f"SAMBAND_WORKER_NAME: the worker may not describe its consumer groups ({exc}), so it cannot "
                "tell whether another worker holds its name: grant it Describe on them, or leave the name unset"
            ) from None
        except BrokerUnreachable as exc:
            if asyncio.get_running_loop().time() >= deadline:
                raise SettingsError(f"SAMBAND_WORKER_NAME: cannot check who holds the name: {exc}") from None
            await asyncio.sleep(2.0)  # a coordinator loading, a broker just gone: asked again
