"""Kafka-backed Output and DeadLetters for connectors: acks=all, and return only once durable."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from bus.record_batches import RecordBatches
from connectors.api import DeadLetters, Output, OutputRecord
from connectors.dead_letters import DeadLetter, DeadLetterSeal
from schemas.ingest_key import IngestKey


class KafkaOutput(Output):
    """Each `send` fills one record batch per partition (bus/record_batches.py: the key's
    partition by murmur2, as with `producer.send`, at a fraction of its cost per record) and waits
    for every batch's acknowledgement. Records keep their order within a partition, so one key's
    records keep the order of the list, and of calls awaited one after another.

    The key is the person's pseudonym read from the record (schemas/ingest_key.py), not the key
    the connector chose: so every connector keeps one person's events in order without knowing
    it. A record that names no readable person keeps the connector's key (ingest dead-letters it)."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, instance: str, keys: IngestKey):
        self._producer = producer
        self._topic = topic
        self._keys = keys
        self._source_header = ("samband-source", instance.encode())
        self._batches: RecordBatches | None = None  # the topic's partitions read once

    async def send(self, records: Sequence[OutputRecord]) -> None:
        if self._batches is None:
            batches = RecordBatches(self._producer)
            await batches.load([self._topic])
            self._batches = batches
        key_of = self._keys.of
        for r in records:
            self._batches.add(
                self._topic, key_of(r.value) or r.key.encode(), r.value, [*r.headers, self._source_header]
            )
        # Adding and handing the batches over happen with no await between them, so concurrent
        # sends never share a batch and each awaits only its own.
        await asyncio.gather(*await self._batches.send())


class KafkaDeadLetters(DeadLetters):
    """Writes each dead letter's value sealed (connectors/dead_letters.py): the connector hands over
    the raw input, and nobody without the dead-letter key reads it back."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, instance: str, seal: DeadLetterSeal):
        self._producer = producer
        self._topic = topic
        self._seal = seal
        self._original_headers = [("samband-source", instance.encode())]

    async def send(self, key: bytes | None, value: bytes, dead_letter: DeadLetter) -> None:
        headers = dead_letter.headers(self._original_headers)
        await (await self._producer.send(self._topic, value=self._seal.seal(value), key=key, headers=headers))
