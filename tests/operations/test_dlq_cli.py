"""Issue 18: `dlq list` filters by stage, reason, time and subscription, prints JSON, shows a source
letter's event, and `dlq show` keeps the dead letter's own id apart from where its original was read."""

from __future__ import annotations

import json

import pytest
from support import unique_name

from bus import clients
from bus.topics import ensure_topics, topic_names
from connectors.dead_letters import DeadLetter
from tests.operations.samband_cli import samband

pytestmark = pytest.mark.kafka


async def _write_letters(bootstrap: str, app_id: str) -> str:
    topic = topic_names(app_id).deadletter
    await ensure_topics(bootstrap, {topic: {}}, partitions=1)
    letters = [
        (b"src-event-1", DeadLetter("event.unknown_type", "not in the catalog", "source")),
        (
            b"ing-1",
            DeadLetter(
                "kommune.unknown",
                "unknown kommune",
                "ingest",
                topic=f"{app_id}-ingest",
                partition=3,
                offset=77,
                event_id="ing-1",
            ),
        ),
        (
            b"oslo-skole/" + b"ab" * 16,
            DeadLetter("delivery.rejected", "422", "deliver", subscription="oslo-skole", event_id="del-1"),
        ),
    ]
    producer = clients.producer(bootstrap, acks="all")
    await producer.start()
    try:
        for key, letter in letters:
            await producer.send_and_wait(topic, b"sealed", key=key, headers=letter.headers())
    finally:
        await producer.stop()
    return topic


async def test_dlq_list_filters_and_one_id_scheme(kafka_bootstrap):
    app_id = unique_name("dlq")
    await _write_letters(kafka_bootstrap, app_id)
    env = {"SAMBAND_APP_ID": app_id}

    async def listed(*filters: str) -> list[dict]:
        result = await samband(kafka_bootstrap, "dlq", "list", "--json", *filters, env=env)
        assert result.code == 0, result.stderr
        return json.loads(result.stdout)

    every = await listed()
    assert [(r["id"], r["stage"], r["event"]) for r in every] == [
        ("0:0", "source", "src-event-1"),  # a source letter's event: its key (was an empty column)
        ("0:1", "ingest", "ing-1"),
        ("0:2", "deliver", "del-1"),
    ]
    assert [r["id"] for r in await listed("--stage", "source")] == ["0:0"]
    assert [r["id"] for r in await listed("--reason", "kommune.")] == ["0:1"]
    assert [r["id"] for r in await listed("--reason", "delivery.rejected")] == ["0:2"]
    assert [r["id"] for r in await listed("--subscription", "oslo-skole")] == ["0:2"]
    assert len(await listed("--since", "1h")) == 3
    assert await listed("--since", "2099-01-01T00:00:00+00:00") == []

    shown = await samband(kafka_bootstrap, "dlq", "show", "0:1", env=env)
    assert shown.code == 0, shown.stderr
    letter = json.loads(shown.stdout)
    assert letter["id"] == "0:1" and "partition" not in letter and "offset" not in letter
    assert letter["read_from"] == {"topic": f"{app_id}-ingest", "partition": 3, "offset": 77}

    bad = await samband(kafka_bootstrap, "dlq", "list", "--since", "yesterday", env=env)
    assert bad.code == 2 and "duration" in bad.stderr


async def test_status_counts_dead_letters_of_every_stage_and_names_the_top_reasons(kafka_bootstrap):
    """`samband status` stayed HEALTHY with 1,400 ingest and source dead letters: it counted delivery's only."""
    app_id = unique_name("dlq-status")
    await _write_letters(kafka_bootstrap, app_id)
    status = await samband(kafka_bootstrap, "status", "--json", "--interval", "0", env={"SAMBAND_APP_ID": app_id})
    assert status.code == 0, status.stdout + status.stderr  # within the default limits
    counted = json.loads(status.stdout)["dead_letters"]
    assert {stage: counted[stage]["total"] for stage in ("source", "ingest", "route", "deliver")} == {
        "source": 1, "ingest": 1, "route": 0, "deliver": 1}  # fmt: skip
    strict = await samband(
        kafka_bootstrap, "status", "--interval", "0",
        env={"SAMBAND_APP_ID": app_id, "SAMBAND_DEAD_LETTER_LIMITS": "source=5,ingest:kommune.unknown=0"},
    )  # fmt: skip
    assert strict.code == 1
    [problem] = [line for line in strict.stdout.splitlines() if line.startswith("UNHEALTHY: ")]
    assert "ingest dead letters of reason kommune.unknown" in problem and "kommune.unknown 1" in problem
    bad = await samband(kafka_bootstrap, "status", env={"SAMBAND_APP_ID": app_id, "SAMBAND_DEAD_LETTER_LIMITS": "x=1"})
    assert bad.code == 2 and "SAMBAND_DEAD_LETTER_LIMITS" in bad.stderr
