"""The dashboard's dead-letter window reads only what is new at each refresh, and counts each
dead letter once (found in review: every worker re-read the whole window every 10 s)."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer
from support import unique_name

from agents.dead_letter_health import DeadLetterWindow
from bus.topics import DEADLETTER
from connectors.dead_letters import DeadLetter

pytestmark = pytest.mark.kafka


async def _write(bootstrap: str, topic: str, letters: list[DeadLetter]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for letter in letters:
            await producer.send_and_wait(topic, b"sealed", key=b"k", headers=letter.headers())
    finally:
        await producer.stop()


async def test_each_refresh_adds_only_the_new_dead_letters_and_keeps_the_newest(kafka_bootstrap):
    app_id = unique_name("dlwindow")
    topic = await DEADLETTER.ensure(kafka_bootstrap, app_id)
    window = DeadLetterWindow(3600, recent=3)
    await _write(kafka_bootstrap, topic, [DeadLetter("wire.not_avro", "m", "source") for _ in range(3)])
    await window.refresh(kafka_bootstrap, app_id)
    assert window.counts()["source"].total == 3

    await _write(kafka_bootstrap, topic, [DeadLetter("delivery.rejected", "m", "deliver", subscription="s")] * 2)
    await window.refresh(kafka_bootstrap, app_id)
    await window.refresh(kafka_bootstrap, app_id)  # nothing new: nothing counted twice
    counts = window.counts()
    assert (counts["source"].total, counts["deliver"].total) == (3, 2)
    assert counts["deliver"].top() == [("delivery.rejected", 2)]
    newest = window.newest()
    assert len(newest) == 3 and [row["stage"] for row in newest[:2]] == ["deliver", "deliver"]
    assert len({row["id"] for row in newest}) == 3
