"""Read topics, offsets and consumer-group lag from the broker (aiokafka's admin client).

    async with KafkaInspector(bootstrap) as kafka:
        partitions = await kafka.topic_partitions(prefix="samband-")
        offsets = await kafka.offsets(partitions)
        lag = await kafka.group_lag("samband")

Used by `samband topics | lag | status` and by the worker's `/readyz` and `/metrics`.
An unreachable broker raises `BrokerUnreachable`, whose message names the address only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from confluent_kafka import KafkaError as KafkaError_
from confluent_kafka import KafkaException

from bus import clients


class BrokerUnreachable(Exception):
    """The broker could not be reached, or did not answer within the timeout."""


@dataclass(frozen=True)
class PartitionOffsets:
    topic: str
    partition: int
    start: int
    end: int

    @property
    def messages(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


class GroupsUndescribed(Exception):
    """The principal may not describe the groups; the message is librdkafka's error's name."""


_NOT_AUTHORISED = (
    KafkaError_.GROUP_AUTHORIZATION_FAILED,
    KafkaError_.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError_.TOPIC_AUTHORIZATION_FAILED,
)


@dataclass(frozen=True)
class GroupMember:
    """One member of a consumer group: the client (a worker process) and the partitions it holds."""

    group: str
    client_id: str
    host: str
    partitions: dict[str, list[int]]  # topic -> partitions assigned
    instance: str | None = None  # its static name (SAMBAND_WORKER_NAME), if it has one


class KafkaInspector:
    def __init__(self, bootstrap: str, timeout: float = 10.0):
        self.bootstrap = bootstrap
        self.timeout = timeout
        timeout_ms = int(timeout * 1000)
        self._admin = clients.admin(bootstrap, request_timeout_ms=timeout_ms)
        # A consumer without a group: only asks for offsets, never joins or commits.
        self._consumer = clients.consumer(bootstrap, enable_auto_commit=False, request_timeout_ms=timeout_ms)

    async def __aenter__(self) -> KafkaInspector:
        try:
            async with asyncio.timeout(self.timeout):
                await self._admin.start()
                await self._consumer.start()
        except (TimeoutError, KafkaError, OSError):
            await self.close()
            raise BrokerUnreachable(
                f"Kafka at {self.bootstrap} could not be reached within {self.timeout:.0f} s"
            ) from None
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def close(self) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def _call(self, coroutine):
        try:
            async with asyncio.timeout(self.timeout):
                return await coroutine
        except (TimeoutError, KafkaError, OSError):
            raise BrokerUnreachable(
                f"Kafka at {self.bootstrap} could not be reached within {self.timeout:.0f} s"
            ) from None

    async def brokers(self) -> list[str]:
        """`host:port` of each broker in the cluster."""
        cluster = await self._call(self._admin.describe_cluster())
        return [f"{b['host']}:{b['port']}" for b in cluster["brokers"]]

    async def topic_partitions(self, prefix: str = "") -> list[TopicPartition]:
        """Every partition of the non-internal topics whose name starts with `prefix`."""
        names = [
            n for n in await self._call(self._admin.list_topics()) if n.startswith(prefix) and not n.startswith("__")
        ]
        if not names:
            return []
        described = await self._call(self._admin.describe_topics(names))
        return sorted(
            TopicPartition(topic["topic"], p["partition"])
            for topic in described
            if topic["error_code"] == 0 and not topic["is_internal"]
            for p in topic["partitions"]
        )

    async def offsets(self, partitions: Iterable[TopicPartition]) -> list[PartitionOffsets]:
        partitions = list(partitions)
        if not partitions:
            return []
        start = await self._call(self._consumer.beginning_offsets(partitions))
        end = await self._call(self._consumer.end_offsets(partitions))
        return [PartitionOffsets(tp.topic, tp.partition, start[tp], end[tp]) for tp in partitions]

    async def groups(self, prefix: str = "") -> list[str]:
        listed = await self._call(self._admin.list_consumer_groups())
        return sorted(group for group, _protocol in listed if group.startswith(prefix))

    async def group_members(self, groups: Iterable[str]) -> list[GroupMember]:
        """The members of `groups` and their assignments (none while a group is rebalancing or empty)."""
        groups = list(groups)
        if not groups:
            return []

        def describe() -> list[GroupMember]:
            admin = clients.librdkafka_admin(self.bootstrap)
            found = []
            for group, future in admin.describe_consumer_groups(groups, request_timeout=self.timeout).items():
                for member in future.result(self.timeout).members:
                    partitions: dict[str, list[int]] = {}
                    for tp in member.assignment.topic_partitions if member.assignment else ():
                        partitions.setdefault(tp.topic, []).append(tp.partition)
                    found.append(
                        GroupMember(
                            group,
                            member.client_id,
                            member.host,
                            {t: sorted(p) for t, p in partitions.items()},
                            member.group_instance_id or None,
                        )
                    )
            return found

        try:
            members = await self._call(asyncio.to_thread(describe))
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if error is not None and error.code() in _NOT_AUTHORISED:  # no right to describe them: not an outage
                raise GroupsUndescribed(error.name()) from None
            raise BrokerUnreachable(
                f"Kafka at {self.bootstrap} could not describe the groups {', '.join(groups)}"
            ) from None
        return sorted(members, key=lambda m: (m.group, m.client_id))

    async def group_lag(
        self, group: str, partitions: Iterable[TopicPartition] | None = None, also: Iterable[TopicPartition] = ()
    ) -> list[PartitionLag]:
        """Lag of `group` on the partitions it has committed on and `also` (or on `partitions`, where given).

        A partition without a committed offset counts from its start offset: the group will read
        all of it (auto_offset_reset=earliest, as the bus's consumers use).
        """
        wanted = list(partitions) if partitions is not None else None
        committed = await self._call(self._admin.list_consumer_group_offsets(group, partitions=wanted))
        tps = wanted if wanted is not None else list(set(committed) | set(also))
        if not tps:
            return []
        start = await self._call(self._consumer.beginning_offsets(tps))
        end = await self._call(self._consumer.end_offsets(tps))
        rows = []
        for tp in sorted(tps):
            meta = committed.get(tp)
            position = meta.offset if meta is not None and meta.offset >= 0 else start[tp]
            rows.append(PartitionLag(group, tp.topic, tp.partition, position, end[tp]))
        return rows


class SharedInspector:
    """An inspector opened on first use and kept for the next (the worker's web pages ask often);
    `close()` drops it, and the next use opens a new one (after the broker was unreachable)."""

    def __init__(self, bootstrap: str, timeout: float = 5.0):
        self.bootstrap, self.timeout = bootstrap, timeout
        self._inspector: KafkaInspector | None = None

    async def get(self) -> KafkaInspector:
        if self._inspector is None:
            self._inspector = await KafkaInspector(self.bootstrap, self.timeout).__aenter__()
        return self._inspector

    async def close(self) -> None:
        if self._inspector is not None:
            inspector, self._inspector = self._inspector, None
            await inspector.close()
