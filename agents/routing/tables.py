"""Writing Faust table entries from a batch loop.

Faust's `table[key] = value` takes the changelog partition from the event being iterated;
an agent that handles a batch of events at once must name the partition itself: the
partition of the source event, so the entry is recovered with that partition.
"""

from __future__ import annotations

from typing import Any

from faust.types import TableT


def table_set(table: TableT, partition: int, key: Any, value: Any) -> None:
    table.send_changelog(partition, key, value)
    table.data[key] = value


def table_delete(table: TableT, partition: int, key: Any) -> None:
    table.send_changelog(partition, key, None, value_serializer="raw")
    table.data.pop(key, None)
