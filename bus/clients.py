"""Every Kafka client of the project is made here, so the settings that reach the cluster live in one place.

    consumer = clients.consumer(bootstrap, group_id="samband-router", enable_auto_commit=False)
    producer = clients.durable_producer(bootstrap)       # acks=all, idempotent
    admin = clients.admin(bootstrap)

`connection()` is what every client takes to reach the cluster; the options each call adds are
that client's own (group, batching, timeouts). Faust's app (agents/app.py) builds its clients
itself from the same bootstrap setting.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient


def connection(bootstrap: str) -> dict[str, Any]:
    """The options every client takes to reach the cluster."""
    return {"bootstrap_servers": bootstrap}


def consumer(bootstrap: str, *topics: str, **options: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **connection(bootstrap), **options)


def producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**connection(bootstrap), **options)


def durable_producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    """acks=all and idempotent: a retry neither loses nor reorders records within a partition."""
    return producer(bootstrap, **{"acks": "all", "enable_idempotence": True, **options})


def admin(bootstrap: str, **options: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**connection(bootstrap), **options)
