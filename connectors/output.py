"""Kafka-backed Output and DeadLetters for connectors: acks=all, and return only once durable."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from connectors.api import DeadLetters, Output, OutputRecord
from connectors.dead_letters import DeadLetter


class KafkaOutput(Output):
    def __init__(self, producer: AIOKafkaProducer, topic: str, instance: str):
        self._producer = producer
        self._topic = topic
        self._source_header = ("samband-source", instance.encode())

    async def send(self, records: Sequence[OutputRecord]) -> None:
        # Enqueue all first (the producer batches them), then wait for every acknowledgement.
        pending = [
            await self._producer.send(
                self._topic, value=r.value, key=r.key.encode(), headers=[*r.headers, self._source_header]
            )
            for r in records
        ]
        await asyncio.gather(*pending)


class KafkaDeadLetters(DeadLetters):
    def __init__(self, producer: AIOKafkaProducer, topic: str, instance: str):
        self._producer = producer
        self._topic = topic
        self._original_headers = [("samband-source", instance.encode())]

    async def send(self, key: bytes | None, value: bytes, dead_letter: DeadLetter) -> None:
        headers = dead_letter.headers(self._original_headers)
        await (await self._producer.send(self._topic, value=value, key=key, headers=headers))
