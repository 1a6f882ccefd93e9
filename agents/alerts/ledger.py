"""When each subscription's contact was last alerted, kept in the compacted topic `<app id>-alerts`.

Key: subscription id. Value: `{"last_sent": "<ISO 8601 UTC>"}`. A worker reads the topic whole
when it opens the ledger, so a restart remembers what was sent and does not send it again.
"""

from __future__ import annotations

import json
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from connectors.malformed import json_object, skip_malformed


def alerts_topic(app_id: str) -> str:
    return f"{app_id}-alerts"


class AlertLedger:
    def __init__(self, topic: str, producer: AIOKafkaProducer, last_sent: dict[str, datetime]):
        self.topic = topic
        self._producer = producer
        self._last_sent = last_sent

    @classmethod
    async def open(cls, bootstrap: str, app_id: str) -> AlertLedger:
        topic = alerts_topic(app_id)
        await _ensure_compacted_topic(bootstrap, topic)
        last_sent = await _read_whole(bootstrap, topic)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
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


async def _ensure_compacted_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})])
    except TopicAlreadyExistsError:  # another worker created it meanwhile
        pass
    finally:
        await admin.close()


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("last_sent without its time zone")
    return moment


async def _read_whole(bootstrap: str, topic: str) -> dict[str, datetime]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    last_sent: dict[str, datetime] = {}
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        end = (await consumer.end_offsets([partition]))[partition]
        while await consumer.position(partition) < end:
            for records in (await consumer.getmany(partition, timeout_ms=1000)).values():
                for record in records:
                    with skip_malformed(topic):
                        subscription = record.key.decode()
                        if record.value is None:
                            last_sent.pop(subscription, None)
                        else:
                            last_sent[subscription] = _aware(
                                datetime.fromisoformat(json_object(record.value)["last_sent"])
                            )
    finally:
        await consumer.stop()
    return last_sent
