"""RecordBatches' murmur2 is Kafka's: keyed records land where any client puts them (the placement
itself, through the broker, is tested with KafkaOutput in test_output_and_state.py)."""

from __future__ import annotations

import random

from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from bus.record_batches import murmur2


def test_murmur2_equals_kafkas_for_every_key_length_and_byte():
    draw = random.Random(7)
    keys = [bytes(draw.randrange(256) for _ in range(length)) for length in range(64) for _ in range(50)]
    keys += [b"\xff" * n for n in range(9)] + [f"event-{n}".encode() for n in range(2000)]
    for key in keys:
        assert murmur2(key) == aiokafka_murmur2(key), key
