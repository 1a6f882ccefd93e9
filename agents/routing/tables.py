"""Table writes from a batch loop, made durable only after the batch's outputs are.

Faust's `table[key] = value` takes the changelog partition from the event being iterated and
sends the changelog record at once. A batch loop must name the partition itself (that of the
source event, so the entry is recovered with it), and must not let state reach Kafka before
the outputs it describes: a worker killed in between would recover the state ("purge sent",
"id seen") without the output, and never produce it. So the value is visible in memory at
once, and the changelog records go out in `flush()`, after the batch's sends are acknowledged.
Faust flushes them before it commits the batch's offsets.
"""

from __future__ import annotations

from typing import Any

from faust.types import TableT


class TableWrites:
    def __init__(self) -> None:
        self._pending: list[tuple[TableT, int, Any, Any]] = []

    def set(self, table: TableT, partition: int, key: Any, value: Any) -> None:
        table.data[key] = value
        self._pending.append((table, partition, key, value))

    def delete(self, table: TableT, partition: int, key: Any) -> None:
        table.data.pop(key, None)
        self._pending.append((table, partition, key, None))

    def flush(self) -> None:
        for table, partition, key, value in self._pending:
            if value is None:
                table.send_changelog(partition, key, None, value_serializer="raw")
            else:
                table.send_changelog(partition, key, value)
        self._pending.clear()
