"""Pull delivery: a subscription with `delivery: {kind: pull}` fetches its events over HTTP.

    delivery: {kind: pull}      # GET /subscriptions/{id}/events?after=CURSOR (the worker serves it: agents/subscriptions/events_api.py)

The delivery stage treats a pull subscription like any other (per-person order, retries, the
ledger, pause, windows); "sending" is appending the delivery record to the subscription's own
topic `<app id>-pull.<id>` (one partition: one order, an offset is a cursor; retention
SAMBAND_PULL_RETENTION_DAYS). The record is the delivery record as the router wrote it, the
bus's pseudonym of the person as its key: the protection rule is applied again when the
subscriber fetches it (agents/delivery/sent.py), since that is when it leaves the bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pydantic import Field

from connectors.api import ConnectorConfig, Context, Outcome, Sink, SinkRecord
from connectors.kafka_sink.sink import TopicWriter, write_acknowledged


def pull_topic(prefix: str, subscription: str) -> str:
    """The topic a pull subscription's deliveries wait in; `prefix` is `<app id>-pull.`."""
    return prefix + subscription


class PullConfig(ConnectorConfig):
    # Appends in flight (one per (subscription, person) head at most).
    max_concurrency: int = Field(8, ge=1, le=64)


class PullSink(Sink):
    Config = PullConfig
    description = "Kept in the bus for the subscriber to fetch over HTTP (GET /subscriptions/ID/events)"
    config: PullConfig
    # The delivery record itself, keyed by the bus's pseudonym of the person: the protection rule runs
    # again at fetch time, when the record leaves the bus (agents/delivery/sent.py).
    takes_delivery_records = True
    ACK_TIMEOUT = 10.0

    def __init__(self, config: PullConfig, context: Context):
        super().__init__(config, context)
        if context.subscriber is None:
            raise ValueError("a pull sink keeps deliveries for a subscription: the context names no subscriber")
        extras = context.extras
        self.topic = pull_topic(extras["pull_topic_prefix"], context.subscriber.id)
        self.writer: TopicWriter = extras["topic_writer"]

    async def start(self) -> None:
        await self.context.extras["ensure_pull_topic"](self.topic)

    async def write(self, batch: Sequence[SinkRecord]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._write_one(record) for record in batch)))

    async def _write_one(self, record: SinkRecord) -> Outcome:
        return await write_acknowledged(
            self.writer, self.topic, record.key, record.value, list(record.headers), self.ACK_TIMEOUT
        )
