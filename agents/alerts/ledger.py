"""When each subscription's contact was last alerted, kept in the compacted topic `<app id>-alerts`.

Key: subscription id. Value: `{"last_sent": "<ISO 8601 UTC>"}`. A worker reads the topic whole
when it opens the ledger, so a restart remembers what was sent and does not send it again.
"""

from __future__ import annotations

import json
from datetime import datetime

from aiokafka import AIOKafkaProducer

from bus import clients
from bus.malformed import json_object
from bus.reading import read_latest
from bus.topics import ALERTS


class AlertLedger:
    def __init__(self, topic: str, producer: AIOKafkaProducer, last_sent: dict[str, datetime]):
        self.topic = topic
        self._producer = producer
        self._last_sent = last_sent

    @classmethod
    async def open(cls, bootstrap: str, app_id: str) -> AlertLedger:
        topic = await ALERTS.ensure(bootstrap, app_id)
        last_sent = await _read_whole(bootstrap, topic)
        producer = clients.durable_producer(bootstrap)
        await producer.start()
        return cls(topic, producer, last_sent)

    async def close(self) -> None:
        await self._producer.stop()

    def last_sent(self, subscription: str) -> datetime | None:
        return self._last_sent.get(subscription)

    async def record_sent(self, subscription: str, when: datetime) -> None:
        """Durably written (acks=all) before it returns."""
        value = json.dumps({"last_sent": when.isoformat()}).encode()
        await self._producer.send_and_wait(self.topic, key=subscription.encode(), value=value)
        self._last_sent[subscription] = when


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("last_sent without its time zone")
    return moment


async def _read_whole(bootstrap: str, topic: str) -> dict[str, datetime]:
    return await read_latest(
        bootstrap, topic, lambda value: _aware(datetime.fromisoformat(json_object(value)["last_sent"]))
    )
