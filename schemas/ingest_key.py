"""The Kafka key of an ingest record: the person's pseudonym, read from the record itself.

    key = IngestKey(pseudonym_key).of(value)   # bytes, or None when no person can be read

Kafka keeps order within a partition only, and the ingest stage reads each partition in order.
So one person's events keep the order their source gave them only if they all land in the same
ingest partition, that is, if they all have the same key. The connector runtime keys every
record it writes with this (connectors/output.py), whatever key the connector chose; a program
that writes straight to `<app id>-ingest` must use it too. Without it a person's events spread
over the partitions and may be routed in another order: a Move before the change of address
protection that came first.

The key is the same pseudonym the ingest stage keys `<app id>-events` with (schemas/pseudonym.py),
so a duplicate of an event lands in the partition where the first was remembered.
"""

from __future__ import annotations

from schemas import json_text
from schemas.catalog import catalog
from schemas.codec import MAGIC, Codec
from schemas.pseudonym import pseudonym
from schemas.registry import CatalogRegistry

# What a record that names no readable person raises on the way: not Avro of a catalog schema,
# not JSON, no envelope or person attribute, a person that is not ASCII text.
_UNREADABLE = (ValueError, LookupError, TypeError, AttributeError)


class IngestKey:
    def __init__(self, pseudonym_key: bytes, codec: Codec | None = None):
        self.pseudonym_key = pseudonym_key
        self.codec = codec or Codec(CatalogRegistry(catalog()))

    def of(self, value: bytes | None) -> bytes | None:
        """The person's pseudonym (ASCII) of an ingest record: Confluent wire-format Avro of a
        catalog record, or a structured-mode CloudEvent whose `person` attribute names the person.
        None when no person can be read: the record will be a dead letter at ingest anyway."""
        if value is None:
            return None
        try:
            if value[0] == MAGIC:
                person = self.codec.decode(value)["envelope"]["person"]
            else:
                person = json_text.loads(value)["person"]
            return pseudonym(person, self.pseudonym_key).encode()
        except _UNREADABLE:
            return None
