"""The drop-folder source against the real broker and a real tmp dir: conformance, CSV, bad rows, mid-file resume."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from http_ingest_client import cloudevent
from kafka_io import event_id, read_to_end
from support import dead_letter_key, open_dead_letter, pseudonym_key

from bus.topics import topic_names
from connectors.dead_letters import DeadLetter
from connectors.files.source import DropFolderSource
from connectors.runtime import open_connector
from connectors.testing import SourceConformance
from schemas.examples import BERGEN_ADDRESS, OSLO_ADDRESS

pytestmark = pytest.mark.kafka
WAIT_S = 30.0


def drop(folder: Path, name: str, content: str) -> None:
    """Write under a hidden temp name, then rename: how a system drops a file."""
    temp = folder / f".{name}.tmp"
    temp.write_text(content, "utf-8")
    os.rename(temp, folder / name)


def jsonl(events: list[dict]) -> str:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)


def bad_checksum(event: dict) -> dict:
    person = event["person"]
    return event | {"person": person[:-1] + str((int(person[-1]) + 1) % 10)}


class TestDropFolderConformance(SourceConformance):
    connector = DropFolderSource
    bad_input_reason = "identity.checksum"
    invalid_configs = [
        ({}, "directory"),
        ({"directory": "/x", "chunk_rows": 0}, "chunk_rows"),
        ({"directory": "/x", "dir": 1}, "dir"),
    ]

    @asynccontextmanager
    async def environment(self, tmp_path):
        yield {"folder": tmp_path / "inbox", "files": 0, "sent": {}}

    def config(self, env) -> dict:
        env["folder"].mkdir(exist_ok=True)
        return {"directory": str(env["folder"]), "poll_interval_s": 0.05}

    async def add_inputs(self, env, count: int) -> list[str]:
        events = [cloudevent("Move") for _ in range(count)]
        env["sent"].update({e["id"]: e for e in events})
        self._drop(env, jsonl(events))
        return [e["id"] for e in events]

    async def redeliver(self, env, ids: list[str]) -> None:
        """Done files are not read again: the system drops the same rows once more."""
        self._drop(env, jsonl([env["sent"][i] for i in ids]))

    async def add_bad_input(self, env) -> None:
        self._drop(env, jsonl([bad_checksum(cloudevent("Move"))]))

    def _drop(self, env, content: str) -> None:
        env["folder"].mkdir(exist_ok=True)
        env["files"] += 1
        drop(env["folder"], f"batch-{env['files']:03d}.jsonl", content)

    def personal_values(self, env) -> list[str]:
        return [v for a in (OSLO_ADDRESS, BERGEN_ADDRESS) for v in a.values() if isinstance(v, str) and len(v) > 4]


@asynccontextmanager
async def running(bootstrap: str, app_id: str, folder: Path, **config):
    raw = {"directory": str(folder), "poll_interval_s": 0.05, **config}
    async with open_connector(
        DropFolderSource,
        "files-test",
        raw,
        bootstrap=bootstrap,
        app_id=app_id,
        pseudonym_key=pseudonym_key(),
        dead_letter_key=dead_letter_key(),
    ) as source:
        task = asyncio.create_task(source.run())
        try:
            yield source
        finally:
            source.stopping.set()
            await asyncio.wait_for(task, WAIT_S)


async def wait_until_done(folder: Path, count: int) -> list[Path]:
    async with asyncio.timeout(WAIT_S):
        while len(done := sorted((folder / "done").glob("*"))) < count:
            await asyncio.sleep(0.05)  # poll interval inside a deadline
    return done


def csv_text(events: list[dict]) -> str:
    out = io.StringIO()
    columns = ["id", "source", "type", "time", "person", "kommunenummer", "changekind", "data"]
    writer = csv.writer(out)
    writer.writerow(columns)
    for e in events:
        writer.writerow([e["id"], e["source"], e["type"], e["time"], e["person"], ";".join(e["kommunenummer"]),
                         e["changekind"], json.dumps(e["data"], ensure_ascii=False)])  # fmt: skip
    return out.getvalue()


async def test_a_csv_file_with_a_bad_row_sends_the_rest_and_dead_letters_the_row_by_number(
    connector_kafka, connector_app_id, tmp_path
):
    events = [cloudevent("Move"), bad_checksum(cloudevent("Move")), cloudevent("Birth")]
    drop(tmp_path, "flytting.csv", csv_text(events))
    async with running(connector_kafka, connector_app_id, tmp_path):
        (done,) = await wait_until_done(tmp_path, 1)
    assert done.name.endswith(".flytting.csv") and not list((tmp_path / "processing").iterdir())
    topics = topic_names(connector_app_id)
    ingest = await read_to_end(connector_kafka, topics.ingest)
    assert [event_id(r) for r in ingest] == [events[0]["id"], events[2]["id"]]
    (dead,) = await read_to_end(connector_kafka, topics.deadletter)
    letter = DeadLetter.from_headers(dead.headers)
    assert letter.reason == "identity.checksum" and " row 2 " in letter.message
    assert events[1]["person"] not in letter.message and "Testveien" not in letter.message
    assert (
        json.loads(open_dead_letter(dead.value))["person"] == events[1]["person"]
    )  # the row itself is kept for operators


async def test_a_malformed_jsonl_line_is_dead_lettered_and_the_file_goes_on(
    connector_kafka, connector_app_id, tmp_path
):
    first, last = cloudevent("Move"), cloudevent("Move")
    drop(tmp_path, "a.jsonl", json.dumps(first) + "\n{not json\n\n" + json.dumps(last) + "\n")
    async with running(connector_kafka, connector_app_id, tmp_path):
        await wait_until_done(tmp_path, 1)
    topics = topic_names(connector_app_id)
    assert [event_id(r) for r in await read_to_end(connector_kafka, topics.ingest)] == [first["id"], last["id"]]
    (dead,) = await read_to_end(connector_kafka, topics.deadletter)
    assert (
        DeadLetter.from_headers(dead.headers).reason == "file.row_json" and open_dead_letter(dead.value) == b"{not json"
    )


async def test_a_restart_mid_file_resumes_after_the_bookmarked_row(connector_kafka, connector_app_id, tmp_path):
    events = [cloudevent("Move") for _ in range(30)]
    # The state a crash leaves: the file in processing/, its bookmark at row 12 (rows 1-12 were sent).
    (tmp_path / "processing").mkdir()
    name = "0123456789ab.batch.jsonl"
    (tmp_path / "processing" / name).write_text(jsonl(events))
    async with open_connector(DropFolderSource, "files-test", {"directory": str(tmp_path)},
                              bootstrap=connector_kafka, app_id=connector_app_id, pseudonym_key=pseudonym_key(), dead_letter_key=dead_letter_key()) as source:  # fmt: skip
        await source.context.state.save({"file": name, "row": 12})
    async with running(connector_kafka, connector_app_id, tmp_path, chunk_rows=5):
        await wait_until_done(tmp_path, 1)
    ingest = await read_to_end(connector_kafka, topic_names(connector_app_id).ingest)
    assert [event_id(r) for r in ingest] == [e["id"] for e in events[12:]]
    assert dict(ingest[0].headers)["samband-file-row"] == f"{name}:13".encode()


async def test_a_stop_mid_file_keeps_it_in_processing_and_the_restart_sends_the_rest_once(
    connector_kafka, connector_app_id, tmp_path
):
    events = [cloudevent("Move") for _ in range(300)]
    drop(tmp_path, "big.jsonl", jsonl(events))
    topics = topic_names(connector_app_id)
    async with running(connector_kafka, connector_app_id, tmp_path, chunk_rows=10) as source:
        async with asyncio.timeout(WAIT_S):
            while ((await source.context.state.load()) or {}).get("row", 0) < 10:
                await asyncio.sleep(0.01)  # poll interval inside a deadline
        source.stopping.set()  # asks run() to stop after the current chunk: the file stays in processing/
    assert list((tmp_path / "processing").iterdir()), "stopped mid-file"
    async with running(connector_kafka, connector_app_id, tmp_path, chunk_rows=10):
        await wait_until_done(tmp_path, 1)
    keys = [event_id(r) for r in await read_to_end(connector_kafka, topics.ingest)]
    assert keys == [e["id"] for e in events], "a graceful stop saves its bookmark: nothing lost, nothing twice"


@pytest.mark.parametrize("ignore_unknown", [False, True])
async def test_unknown_fields_are_refused_unless_the_folder_is_set_to_ignore_them(
    connector_kafka, connector_app_id, tmp_path, ignore_unknown
):
    """Found in review: only HTTP ingest could choose to drop unknown attributes and data fields."""
    event = cloudevent("Move")
    extra = event | {"colour": "blue", "data": event["data"] | {"shoeSize": 44}}
    folder = tmp_path / "inbox"
    folder.mkdir()
    drop(folder, "batch.jsonl", jsonl([extra]))
    async with running(connector_kafka, connector_app_id, folder, ignore_unknown=ignore_unknown):
        await wait_until_done(folder, 1)
    topics = topic_names(connector_app_id)
    sent = [event_id(r) for r in await read_to_end(connector_kafka, topics.ingest)]
    dead = [DeadLetter.from_headers(r.headers).reason for r in await read_to_end(connector_kafka, topics.deadletter)]
    if ignore_unknown:
        assert (sent, dead) == ([event["id"]], [])
    else:
        assert (sent, dead) == ([], ["cloudevent.unknown_attribute"])
