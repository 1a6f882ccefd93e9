"""The delivery ledger read back from a real topic: the latest entry per key wins, whatever the partition."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from agents.delivery.ledger import ledger_for_event, ledger_key, ledger_record


async def test_the_latest_entry_wins_when_a_key_has_entries_in_two_partitions(kafka_bootstrap, new_topic):
    """A dead letter replayed and delivered, its two entries in two partitions. Each event has its
    newer entry in the other partition, so one of them is read last whatever the read order."""
    topic = await new_topic(partitions=2, prefix="ledger")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for event_id, delivered_in in (("e-1", 0), ("e-2", 1)):
            key = ledger_key(event_id, "sub")
            dead = ledger_record(event_id, "sub", "dead_lettered", 12, 1000.0, "delivery.retries_exhausted")
            await producer.send_and_wait(topic, dead, key=key, partition=1 - delivered_in)
            await producer.send_and_wait(
                topic, ledger_record(event_id, "sub", "delivered", 1, 2000.0), key=key, partition=delivered_in
            )
    finally:
        await producer.stop()
    for event_id in ("e-1", "e-2"):
        found = await ledger_for_event(kafka_bootstrap, topic, event_id)
        assert {sub: (e["status"], e["attempts"]) for sub, e in found.items()} == {"sub": ("delivered", 1)}, event_id
