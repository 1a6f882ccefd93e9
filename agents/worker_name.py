"""A named worker (SAMBAND_WORKER_NAME) starts only when no other live worker holds its name.

The name makes the worker's stage consumers static members of their groups (bus/batches.py). A
member that joins with a name is taken as that name's new incarnation, and the coordinator drops
the one before it. That is what a restart after a kill needs, but two live workers with one name
would drop each other over and over: aiokafka's heartbeats do not carry the name, so neither is
fenced, and both would handle the same partitions.

So before it joins, a worker looks at who holds its name in the stages' groups. A process on this
host that is no longer running is its own predecessor (killed, its session not yet timed out): it
goes on. A running one, or a member on another host, is refused: that worker may be alive, and
if it is gone its membership ends with its session timeout, after which a start succeeds.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from agents.config import Settings, SettingsError, bootstrap_servers
from agents.stage_runtime import STAGES, stage_group
from bus.batches import process_member_name
from bus.inspector import GroupMember, KafkaInspector

# bus/batches.py process_client_id: samband-<host>-<pid>-<4 characters of the worker id>[-p<index>]
_CLIENT_ID = re.compile(r"^samband-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{4}(?:-p\d+)?$")


async def refuse_a_live_namesake(settings: Settings) -> None:
    """SettingsError when another worker may be running under this process's name."""
    if not settings.worker_name:
        return
    name = process_member_name(settings.worker_name)
    groups = [stage_group(settings.app_id, stage) for stage in STAGES]
    async with KafkaInspector(bootstrap_servers(settings)) as kafka:
        listed = set(await kafka.groups(f"{settings.app_id}-"))
        members = await kafka.group_members([group for group in groups if group in listed])
    for member in members:
        if member.instance == name and not _own_dead_predecessor(member):
            raise SettingsError(
                f"SAMBAND_WORKER_NAME: the name {name!r} is held in {member.group} by {member.client_id} "
                f"(host {member.host}). Give each worker a name of its own; if that worker is gone, its "
                f"membership ends after SAMBAND_BROKER_SESSION_TIMEOUT ({settings.broker_session_timeout:g} s), "
                "and this one starts then"
            )


def _own_dead_predecessor(member: GroupMember) -> bool:
    """The member was a worker process on this host that is no longer running."""
    found = _CLIENT_ID.match(member.client_id)
    if found is None or found["host"] != socket.gethostname():
        return False
    pid = int(found["pid"])
    return pid == os.getpid() or not _is_a_samband_process(pid)  # (in a container restarted, pid 1 again)


def _is_a_samband_process(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running
        pass
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:  # running, and what it runs cannot be told: taken as a worker
        return True
    # `samband worker ...` (a console script run by python) or `python -m agents.cli worker ...`
    return "worker" in command and any(arg == "agents.cli" or Path(arg).name == "samband" for arg in command)
