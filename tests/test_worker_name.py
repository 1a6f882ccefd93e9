"""A named worker claims its name at start (agents/worker_name.py): its own killed predecessor's
membership is no obstacle, any other holder is. The groups' members are given (the Kafka side is
tests/faults/test_two_workers.py); the lock is a real file lock, held by a real second process."""

from __future__ import annotations

import subprocess
import sys

import pytest

import agents.worker_name as worker_name
from agents.config import Settings, SettingsError
from bus.batches import process_client_id
from bus.inspector import GroupMember


@pytest.fixture
def settings(tmp_path, monkeypatch):
    yield Settings(worker_name="alpha", data_dir=str(tmp_path), app_id="app")
    if worker_name._held is not None:  # the claim is held for the process's life: let the next test claim
        worker_name._held.close()
        worker_name._held = None


def holders(monkeypatch, *client_ids: str) -> None:
    async def members(settings):
        return [GroupMember("app-router", client_id, "/10.0.0.1", {}, "alpha") for client_id in client_ids]

    monkeypatch.setattr(worker_name, "_members", members)


async def test_a_name_nobody_holds_is_claimed_and_the_claim_names_this_process(settings, monkeypatch, tmp_path):
    holders(monkeypatch)
    await worker_name.claim_worker_name(settings)
    assert (tmp_path / "names" / "alpha").read_text() == process_client_id()


async def test_the_member_left_by_this_data_directorys_last_process_is_its_predecessor(settings, monkeypatch, tmp_path):
    (tmp_path / "names").mkdir()
    (tmp_path / "names" / "alpha").write_text("samband-host-a-1-ab12")  # killed: the lock is free
    holders(monkeypatch, "samband-host-a-1-ab12")
    await worker_name.claim_worker_name(settings)
    assert (tmp_path / "names" / "alpha").read_text() == process_client_id()


async def test_another_holder_of_the_name_is_refused_naming_it(settings, monkeypatch, tmp_path):
    (tmp_path / "names").mkdir()
    (tmp_path / "names" / "alpha").write_text("samband-host-a-1-ab12")
    # Same host name and pid, another process's token: another container, or another host named alike.
    holders(monkeypatch, "samband-host-a-1-cd34")
    with pytest.raises(SettingsError, match="the name 'alpha' is held in app-router by samband-host-a-1-cd34"):
        await worker_name.claim_worker_name(settings)
    assert (tmp_path / "names" / "alpha").read_text() == "samband-host-a-1-ab12"  # the record is left as it was


async def test_a_running_process_holding_the_name_on_this_host_is_refused(settings, monkeypatch, tmp_path):
    holders(monkeypatch)
    (tmp_path / "names").mkdir()
    script = (
        "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); "
        "sys.stdin.read()"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "names" / "alpha")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None and other.stdout.readline() == "held\n"
        with pytest.raises(SettingsError, match="a running process on this host holds the name 'alpha'"):
            await worker_name.claim_worker_name(settings)
    finally:
        other.communicate("")


async def test_an_unnamed_worker_claims_nothing(tmp_path):
    await worker_name.claim_worker_name(Settings(worker_name="", data_dir=str(tmp_path)))
    assert not (tmp_path / "names").exists()


def test_a_name_ending_like_a_process_of_a_worker_of_several_is_refused():
    with pytest.raises(ValueError, match="ends like a process's name"):
        Settings(worker_name="alpha-p1")
