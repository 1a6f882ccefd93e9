"""Ingest's deduplication ids: on disk, counted for SAMBAND_DEDUP_RETENTION_HOURS, not read back
after it (issue 17: a register extract of the country took over 1 GiB per worker process when
they were Python objects). The stage's logic and its state, no broker."""

from __future__ import annotations

import time

from aiokafka import ConsumerRecord
from routing_events import encode, event, synthetic_number

from agents.config import Settings
from agents.ingest.stage import Ingest
from bus.store import DiskTable
from bus.topics import topic_names

PERSON = synthetic_number(3, 4, 79, 200)


def _record(value: bytes, offset: int, topic: str = "ingest") -> ConsumerRecord:
    return ConsumerRecord(topic, 0, offset, 0, 0, None, value, None, 0, len(value), [])


def test_a_seen_id_is_dropped_on_disk_and_counts_again_once_expired(tmp_path):
    topics = topic_names("dedup-test")
    ingest = Ingest(Settings(data_dir=str(tmp_path), dedup_retention_hours=1), topics)
    seen = ingest.seen
    try:
        seen.partitions[0] = seen.disk.table(0, seen.encode, seen.decode)  # as a recovery leaves it
        death = event("Death", PERSON, ["4601"])
        value, outputs = encode(death), []
        ingest.handle_batch([_record(value, 0), _record(value, 1)], outputs)
        assert len(outputs) == 1  # the second is a duplicate
        seen.take()  # the batch's state is written (to RocksDB; to Kafka by the batch service)
        assert isinstance(seen.partitions[0], DiskTable)
        assert seen.partitions[0].get(death["envelope"]["id"]) is not None

        two_hours_ago = b"%d" % (time.time() - 7200)
        seen.set(0, death["envelope"]["id"], two_hours_ago)  # first seen before the retention
        ingest.handle_batch([_record(value, 2)], outputs)
        assert len(outputs) == 2  # expired: not a duplicate any more
    finally:
        seen.close()


def test_an_expired_id_is_not_read_back_from_the_changelog(tmp_path):
    topics = topic_names("dedup-recovery-test")
    ingest = Ingest(Settings(data_dir=str(tmp_path), dedup_retention_hours=1), topics)
    seen = ingest.seen
    try:
        table = seen.disk.table(0, seen.encode, seen.decode)
        fresh, old = b"%d" % time.time(), b"%d" % (time.time() - 7200)
        for offset, (key, value) in enumerate([(b"fresh-id", fresh), (b"old-id", old)]):
            seen._apply(table, ConsumerRecord(topics.ingest_seen_ids, 0, offset, 0, 0, key, value, None, 0, 0, []))
        table.flush()
        assert table.get("fresh-id") == fresh
        assert table.get("old-id") is None  # the broker deletes a closed segment only: it may still be there
    finally:
        seen.close()
