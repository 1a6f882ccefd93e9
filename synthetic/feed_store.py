"""An append-only, on-disk store of feed entries and event documents for the simulator.

Entries and documents are JSON lines in two files; memory holds only their offsets and
an index from document id to sequence number (~100 bytes per event), so 1 M events
cost some 100 MB of RAM rather than the documents themselves.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from array import array
from collections.abc import Iterable
from pathlib import Path

from connectors.folkeregister.feed_format import FEED_PAGE_SIZE, EventDocument, to_json_bytes


class FeedOrderError(ValueError):
    """Documents must arrive with consecutive sequence numbers from 1."""


class FeedStore:
    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self._tempdir = tempfile.TemporaryDirectory(prefix="folkeregister-feed-") if directory is None else None
        root = Path(self._tempdir.name if self._tempdir else directory)
        # Open for the store's life (closed in `close`).
        self._entries = open(root / "entries.jsonl", "wb+")  # noqa: SIM115
        self._documents = open(root / "documents.jsonl", "wb+")  # noqa: SIM115
        self._entry_offsets = array("Q", [0])
        self._document_offsets = array("Q", [0])
        self._sequence_by_id: dict[bytes, int] = {}

    @property
    def latest(self) -> int:
        """The last sequence number held (0 when empty)."""
        return len(self._entry_offsets) - 1

    def extend(self, documents: Iterable[EventDocument]) -> int:
        """Append documents in sequence order; returns how many were added."""
        added = 0
        for document in documents:
            if document.sekvensnummer != self.latest + 1:
                raise FeedOrderError(f"expected sekvensnummer {self.latest + 1}, got {document.sekvensnummer}")
            entry = to_json_bytes(document.feed_entry()) + b"\n"
            body = to_json_bytes(document.document()) + b"\n"
            self._entries.write(entry)
            self._documents.write(body)
            self._entry_offsets.append(self._entry_offsets[-1] + len(entry))
            self._document_offsets.append(self._document_offsets[-1] + len(body))
            self._sequence_by_id[uuid.UUID(document.hendelsesdokument).bytes] = document.sekvensnummer
            added += 1
        self._entries.flush()
        self._documents.flush()
        return added

    def page(self, seq: int, limit: int = FEED_PAGE_SIZE) -> tuple[bytes, int]:
        """The JSON array of entries from and including `seq` (at most `limit`), and their count."""
        first = max(seq, 1)
        last = min(first + limit - 1, self.latest)
        if last < first:
            return b"[]", 0
        start, end = self._entry_offsets[first - 1], self._entry_offsets[last]
        lines = os.pread(self._entries.fileno(), end - start, start)
        return b"[" + lines[:-1].replace(b"\n", b",") + b"]", last - first + 1

    def document(self, document_id: str) -> bytes | None:
        """One event document as JSON, or None for an unknown id."""
        seq = self._sequence(document_id)
        if seq is None:
            return None
        start, end = self._document_offsets[seq - 1], self._document_offsets[seq]
        return os.pread(self._documents.fileno(), end - start, start)[:-1]

    def documents(self, document_ids: list[str]) -> list[bytes | None]:
        """The event documents as JSON, in the order asked, None for an unknown id.

        Ids of a feed page have consecutive sequence numbers: each run of them is one read.
        """
        seqs = [self._sequence(i) for i in document_ids]
        found: dict[int, bytes] = {}
        known = sorted({s for s in seqs if s is not None})
        run_start = 0
        for i in range(1, len(known) + 1):
            if i == len(known) or known[i] != known[i - 1] + 1:
                first, last = known[run_start], known[i - 1]
                start, end = self._document_offsets[first - 1], self._document_offsets[last]
                lines = os.pread(self._documents.fileno(), end - start, start).split(b"\n")
                found.update(zip(range(first, last + 1), lines, strict=False))
                run_start = i
        return [None if s is None else found[s] for s in seqs]

    def _sequence(self, document_id: str) -> int | None:
        try:
            return self._sequence_by_id.get(uuid.UUID(document_id).bytes)
        except ValueError:
            return None

    def close(self) -> None:
        self._entries.close()
        self._documents.close()
        if self._tempdir:
            self._tempdir.cleanup()
