"""Co-partitioned assignment: one worker holds the same partitions in every stage's group (issue 14).

Ingest, routing and delivery are three consumer groups, and a person's records have the same
partition number in all three topics (keyed by person; the router writes deliveries to the
person's partition). Kafka's own assignors order each group's members by a random member id,
so with two workers the groups' assignments interleave: every event passed through both, and
losing one worker stopped all deliveries until its session timed out. This assignor orders the
members by the id of the worker process they belong to (sent along as the member's user data),
the same in every group, and gives each a contiguous range of partitions: while the groups
have the same members, a worker's partition numbers are the same in all three. A worker killed
then pauses only its own partitions, until the session timeout moves them.

A worker process that takes over a cleanly stopped worker's state files (bus/store.py) takes its
id too, before it joins any group, so a restarted worker is given back the same range and
resumes its state from the checkpoint instead of reading other partitions whole.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

_worker_id = uuid.uuid4().hex.encode()  # this process: the same in every group it joins
_joined = False


def worker_id() -> bytes:
    return _worker_id


def take_worker_id(value: bytes) -> bool:
    """This process goes on as the worker whose state files it took over, so it is given the same
    partitions. Only before it has joined any group (a worker's id must be the same in every
    group): False, and the id unchanged, after."""
    global _worker_id
    if _joined:
        return False
    _worker_id = value
    return True


class CoPartitioned(AbstractPartitionAssignor):
    name = "samband-copartitioned"
    version = 0

    @classmethod
    def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        global _joined
        _joined = True
        return ConsumerProtocolMemberMetadata(cls.version, list(topics), _worker_id)

    @classmethod
    def assign(
        cls, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        order = sorted(members, key=lambda member: (bytes(members[member].user_data or b""), member))
        assigned: dict[str, list[tuple[str, list[int]]]] = {member: [] for member in members}
        for topic in sorted({t for metadata in members.values() for t in metadata.subscription}):
            partitions = sorted(cluster.partitions_for_topic(topic) or ())
            takers = [member for member in order if topic in members[member].subscription]
            for i, member in enumerate(takers):  # contiguous ranges, the first ones one longer
                share, extra = divmod(len(partitions), len(takers))
                start = i * share + min(i, extra)
                assigned[member].append((topic, partitions[start : start + share + (i < extra)]))
        return {
            member: ConsumerProtocolMemberAssignment(cls.version, topics, b"") for member, topics in assigned.items()
        }

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        pass
