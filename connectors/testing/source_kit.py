"""SourceConformance: the tests every source connector must pass, against a real broker.

Subclass it in a test module (class name starting with `Test`) and fill in the hooks:

    connector            the Source class
    bad_input_reason     the dead-letter reason `add_bad_input` must produce
    invalid_configs      [(raw config, field the error must name)], each invalid
    secret_values        strings from invalid_configs that must never appear in an error
    environment(tmp)     async context manager: start what the source reads from; yields `env`
    config(env)          a valid raw config for that environment (the source must keep polling
                         for new input until stopped)
    add_inputs(env, n)   make n new good inputs available; return their event ids
    add_bad_input(env)   make one bad input available
    personal_values(env) strings in the inputs that are personal data (names, addresses);
                         11-digit identity numbers are always checked

A push source (its clients send; it polls nothing, e.g. HTTP ingest) sets
`keeps_bookmark = False` (the crash test then waits for no bookmark: what the source
acknowledged is not sent again). A source that does not read consumed input again after a
bookmark reset (HTTP ingest; the drop folder, whose files move to done/) implements
`redeliver(env, ids)`: the outside system sends those inputs again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import pytest

from bus.reading import read_topic
from bus.topics import topic_names
from connectors.api import ConfigError, Source
from connectors.dead_letters import DeadLetter, DeadLetterSeal
from connectors.runtime import open_connector
from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.identity import IDENTITY_NUMBER_IN_TEXT
from schemas.ingest_key import IngestKey
from schemas.registry import CatalogRegistry

WAIT_S = 30.0
DEAD_LETTER_KEY = bytes(32)  # this run's dead letters need no secrecy
PSEUDONYM_KEY = b"samband-conformance-kit-pseudonym-key"  # the kit's own; any key of 32+ bytes
INGEST_KEY = IngestKey(PSEUDONYM_KEY)
_CODEC = Codec(CatalogRegistry(catalog()))


class SourceConformance:
    connector: ClassVar[type[Source]]
    bad_input_reason: ClassVar[str]
    invalid_configs: ClassVar[list[tuple[dict, str]]] = []
    secret_values: ClassVar[tuple[str, ...]] = ()
    keeps_bookmark: ClassVar[bool] = True

    # --- hooks ----------------------------------------------------------------------------

    def environment(self, tmp_path) -> Any:
        raise NotImplementedError("return an async context manager yielding the environment")

    def config(self, env) -> dict:
        raise NotImplementedError

    async def add_inputs(self, env, count: int) -> list[str]:
        raise NotImplementedError

    async def add_bad_input(self, env) -> None:
        raise NotImplementedError

    def personal_values(self, env) -> list[str]:
        return []

    async def redeliver(self, env, ids: list[str]) -> None:
        """Make these inputs arrive again once the bookmark is reset; a polling source re-reads them itself."""

    # --- the kit --------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self, env, bootstrap: str, app_id: str, *, reset_state: bool = False) -> AsyncIterator[Source]:
        """The source, running in a task; stopped gracefully at exit unless already crashed."""
        async with open_connector(
            self.connector,
            "conformance",
            self.config(env),
            bootstrap=bootstrap,
            app_id=app_id,
            pseudonym_key=PSEUDONYM_KEY,
            dead_letter_key=DEAD_LETTER_KEY,
        ) as source:
            if reset_state:
                await source.context.state.reset()
            task = asyncio.create_task(source.run())
            source._conformance_task = task
            try:
                yield source
            finally:
                if not task.done():
                    source.stopping.set()
                    await asyncio.wait_for(task, WAIT_S)  # a source must stop promptly
                elif not task.cancelled() and task.exception():
                    raise task.exception()

    async def test_starts_and_stops(self, connector_kafka, connector_app_id, tmp_path):
        async with self.environment(tmp_path) as env:
            ids = await self.add_inputs(env, 5)
            async with self.running(env, connector_kafka, connector_app_id) as source:
                records = await _wait_for_events(connector_kafka, topic_names(connector_app_id).ingest, ids, source)
            assert source._conformance_task.done()
        # The runtime keys each record by its person, so one person's events keep their order.
        # (A record that names no person keeps the connector's key; ingest dead-letters it.)
        assert all(r.key == INGEST_KEY.of(r.value) for r in records if INGEST_KEY.of(r.value) is not None)

    async def test_resumes_from_state_after_a_crash(self, connector_kafka, connector_app_id, tmp_path):
        ingest = topic_names(connector_app_id).ingest
        async with self.environment(tmp_path) as env:
            first = await self.add_inputs(env, 5)
            async with self.running(env, connector_kafka, connector_app_id) as source:
                await _wait_for_events(connector_kafka, ingest, first, source)
                if self.keeps_bookmark:
                    await _wait_for_bookmark(source)
                source._conformance_task.cancel()  # a crash: no graceful stop
                with pytest.raises(asyncio.CancelledError):
                    await source._conformance_task
            before = len(await _read_all(connector_kafka, ingest))
            second = await self.add_inputs(env, 5)
            async with self.running(env, connector_kafka, connector_app_id) as source:
                await _wait_for_events(connector_kafka, ingest, second, source)
            after_restart = [_event_id(r.value) for r in (await _read_all(connector_kafka, ingest))[before:]]
            assert not set(after_restart) & set(first), "the restarted source read again what its bookmark covered"

    async def test_redelivery_is_idempotent(self, connector_kafka, connector_app_id, tmp_path):
        ingest = topic_names(connector_app_id).ingest
        async with self.environment(tmp_path) as env:
            ids = await self.add_inputs(env, 5)
            async with self.running(env, connector_kafka, connector_app_id) as source:
                await _wait_for_events(connector_kafka, ingest, ids, source)
            # Forget the bookmark: everything is read again.
            async with self.running(env, connector_kafka, connector_app_id, reset_state=True) as source:
                await self.redeliver(env, ids)
                await _wait_for_events(connector_kafka, ingest, ids, source, copies=2)
            by_id: dict[str, set[tuple[bytes, bytes]]] = {}
            for record in await _read_all(connector_kafka, ingest):
                by_id.setdefault(_event_id(record.value), set()).add((record.key, record.value))
            assert all(len(copies) == 1 for copies in by_id.values()), (
                "a re-read event must be the same bytes under the same key"
            )

    async def test_bad_input_reaches_the_dead_letters_and_the_rest_flows(
        self, connector_kafka, connector_app_id, tmp_path
    ):
        topics = topic_names(connector_app_id)
        async with self.environment(tmp_path) as env:
            await self.add_bad_input(env)
            ids = await self.add_inputs(env, 3)
            async with self.running(env, connector_kafka, connector_app_id) as source:
                await _wait_for_events(connector_kafka, topics.ingest, ids, source)
                dead = await _wait_for_records(connector_kafka, topics.deadletter, 1, source)
        letter = DeadLetter.from_headers(dead[0].headers)
        assert (letter.reason, letter.stage) == (self.bad_input_reason, "source")
        assert dead[0].value.startswith(DeadLetterSeal.SEALED), "a dead letter's value is sealed by the runtime"
        assert dict(dead[0].headers)["samband-source"] == b"conformance"

    async def test_logs_carry_no_personal_data(
        self, connector_kafka, connector_app_id, tmp_path, capture_connector_logs
    ):
        async with self.environment(tmp_path) as env:
            await self.add_bad_input(env)
            ids = await self.add_inputs(env, 5)
            async with self.running(env, connector_kafka, connector_app_id) as source:
                await _wait_for_events(connector_kafka, topic_names(connector_app_id).ingest, ids, source)
            personal = self.personal_values(env)
        ours = [e for e in capture_connector_logs if e.get("connector") == "conformance"]
        assert ours, "the source logs nothing through its context logger"
        for entry in ours:
            text = repr(entry)
            assert not IDENTITY_NUMBER_IN_TEXT.search(text), f"identity number in log event {entry['event']!r}"
            leaked = [value for value in personal if value in text]
            assert not leaked, f"personal data in log event {entry['event']!r}"

    def test_config_errors_name_the_field_and_hide_secrets(self):
        assert self.invalid_configs, "declare at least one invalid config"
        for raw, field in self.invalid_configs:
            with pytest.raises(ConfigError) as caught:
                self.connector.parse_config(raw)
            assert field in {path.split(".")[0] for path, _ in caught.value.problems}, str(caught.value)
            assert not [s for s in self.secret_values if s in str(caught.value)], "a secret was echoed"


async def _read_all(bootstrap: str, topic: str) -> list:
    return [record async for record in read_topic(bootstrap, topic)]


async def _wait_for_records(bootstrap: str, topic: str, count: int, source: Source) -> list:
    async with asyncio.timeout(WAIT_S):
        while len(records := await _read_all(bootstrap, topic)) < count:
            _raise_if_crashed(source)
            await asyncio.sleep(0.05)  # poll interval inside a deadline
    return records


def _event_id(value: bytes) -> str:
    """The event id of an ingest record, Avro or CloudEvents JSON (its key is the person's pseudonym)."""
    if value[:1] == b"\x00":
        return _CODEC.decode(value)["envelope"]["id"]
    return json.loads(value)["id"]


async def _wait_for_events(bootstrap: str, topic: str, ids: list[str], source: Source, copies: int = 1) -> list:
    """The topic's records once each of these event ids is on it `copies` times."""
    async with asyncio.timeout(WAIT_S):
        while True:
            records = await _read_all(bootstrap, topic)
            found = [_event_id(r.value) for r in records]
            if all(found.count(i) >= copies for i in ids):
                return records
            _raise_if_crashed(source)
            await asyncio.sleep(0.05)  # poll interval inside a deadline


async def _wait_for_bookmark(source: Source) -> None:
    async with asyncio.timeout(WAIT_S):
        while await source.context.state.load() is None:
            _raise_if_crashed(source)
            await asyncio.sleep(0.05)  # poll interval inside a deadline


def _raise_if_crashed(source: Source) -> None:
    task = source._conformance_task
    if task.done() and not task.cancelled() and task.exception():
        raise task.exception()
    assert not task.done(), "the source's run() returned before it was stopped"
