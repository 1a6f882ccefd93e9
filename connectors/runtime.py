"""Runs a connector: builds its Kafka clients and Context, and drives start / run / stop.

    async with open_connector(FeedSource, "folkeregister", raw_config, bootstrap=..., app_id="samband",
                              pseudonym_key=..., dead_letter_key=...) as source:
        await source.run()          # until source.stopping is set (e.g. by SIGTERM)

`pseudonym_key` (SAMBAND_PSEUDONYM_KEY, the same as the workers') keys every record the source
writes by its person's pseudonym, so one person's events keep their order (schemas/ingest_key.py);
`dead_letter_key` (SAMBAND_DLQ_KEY, 32 bytes) seals its dead letters (connectors/dead_letters.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import structlog

from bus import clients
from bus.topics import CONNECTOR_STATE, DEADLETTER, INGEST, ensure_table_topics, topic_names
from connectors.api import Connector, Context
from connectors.bookmarks import KafkaStateStore
from connectors.dead_letters import DeadLetterSeal
from connectors.output import KafkaDeadLetters, KafkaOutput
from schemas.ingest_key import IngestKey

PRODUCER_STOP_TIMEOUT_S = 15.0


@asynccontextmanager
async def open_connector(
    cls: type[Connector],
    instance: str,
    raw_config: Mapping[str, Any],
    *,
    bootstrap: str,
    pseudonym_key: bytes,
    dead_letter_key: bytes,
    app_id: str = "samband",
    extras: dict[str, Any] | None = None,
) -> AsyncIterator[Connector]:
    """Validate the config (ConfigError), start the connector, yield it, and always stop it."""
    config = cls.parse_config(raw_config)
    topics = topic_names(app_id)
    log = structlog.get_logger("samband.connector").bind(connector=instance)
    # Made from the topic table here too: a source may start before any worker.
    await ensure_table_topics(bootstrap, app_id, [INGEST, DEADLETTER, CONNECTOR_STATE])
    # linger and batch size: a source writes in bursts; request timeout: a broker that is gone
    # fails a write within 15 s, and the records not acknowledged are read again after a restart.
    producer = clients.durable_producer(bootstrap, linger_ms=5, max_batch_size=1 << 20, request_timeout_ms=15_000)
    await producer.start()
    context = Context(
        instance=instance,
        output=KafkaOutput(producer, topics.ingest, instance, IngestKey(pseudonym_key)),
        dead_letters=KafkaDeadLetters(producer, topics.deadletter, instance, DeadLetterSeal(dead_letter_key)),
        state=KafkaStateStore(producer, bootstrap, topics.connector_state, instance),
        log=log,
        extras=dict(extras or {}),
    )
    connector = cls(config, context)
    try:
        await connector.start()
        log.info("connector.started", kind=cls.kind, type=cls.__name__)
        yield connector
    finally:
        try:
            await connector.stop()
        finally:
            try:
                # With the broker gone, stop() would wait forever for undeliverable records. Giving up
                # loses nothing: unacknowledged records were never bookmarked, so they are read again.
                await asyncio.wait_for(producer.stop(), PRODUCER_STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("connector.producer_stop_timeout", seconds=PRODUCER_STOP_TIMEOUT_S)
            log.info("connector.stopped")
