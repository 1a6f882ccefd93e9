"""Which input offsets of `samband-deliveries` may be committed: only below the oldest delivery still open.

A delivery record is open from the moment it is read until what became of it is durable in
Kafka: its ledger entry (delivered), its dead letter, or the pending table (it must wait or
be retried). A worker that crashes re-reads from the committed offset, so every open delivery
is read again; settled ones after it may repeat (same idempotency key).

    offsets.read(partition, offset)      # a record was handled
    offsets.settle(partition, offset)    # its outcome is durable
    offsets.committable()                # partition -> next offset to commit, where it moved
"""

from __future__ import annotations

from collections import deque


class OpenOffsets:
    def __init__(self) -> None:
        self._read: dict[int, deque[int]] = {}  # partition -> offsets read, in order, not yet below the commit point
        self._settled: dict[int, set[int]] = {}  # partition -> offsets in _read that are settled
        self._next: dict[int, int] = {}  # partition -> offset after the last record read
        self._committed: dict[int, int] = {}

    def read(self, partition: int, offset: int) -> None:
        self._read.setdefault(partition, deque()).append(offset)
        self._settled.setdefault(partition, set())
        self._next[partition] = offset + 1

    def next_read(self, partition: int) -> int:
        """The offset after the last record read of `partition`; -1 before the first."""
        return self._next.get(partition, -1)

    def settle(self, partition: int, offset: int) -> None:
        """Ignored for a partition this worker no longer holds."""
        if partition in self._settled:
            self._settled[partition].add(offset)

    def committable(self) -> dict[int, int]:
        """Per partition whose commit point moved: the oldest open offset, or the next one when none is open."""
        moved = {}
        for partition, after in self._next.items():
            read, settled = self._read[partition], self._settled[partition]
            while read and read[0] in settled:  # each offset leaves once: amortised O(1) per record
                settled.discard(read.popleft())
            offset = read[0] if read else after
            if offset > self._committed.get(partition, -1):
                moved[partition] = self._committed[partition] = offset
        return moved

    def drop(self, partitions: set[int]) -> None:
        """Forget partitions this worker no longer holds: their new owner reads from the last commit."""
        for partition in partitions:
            for offsets in (self._read, self._settled, self._next, self._committed):
                offsets.pop(partition, None)
