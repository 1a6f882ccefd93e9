"""The subscription index: (kommune, event type) -> candidate subscriptions.

Looking up an event costs one dict lookup per kommune it concerns (plus one for "all"),
whatever the number of subscriptions; only the candidates' predicates are then checked.
Adding or removing a subscription touches only its own entries, so a change on a live
worker with 18,000 subscriptions costs microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.subscriptions.model import Predicates, Subscription
from schemas.kommuner import older_codes

ALL = "all"


@dataclass(frozen=True)
class Grant:
    """What a subscription receives of one event type: envelope fields and payload fields."""

    envelope: tuple[str, ...]
    payload: tuple[str, ...]

    @classmethod
    def of(cls, paths: list[str]) -> Grant:
        envelope = tuple(p.removeprefix("envelope.") for p in paths if p.startswith("envelope."))
        return cls(envelope, tuple(p for p in paths if not p.startswith("envelope.")))


_NO_PREDICATES = Predicates()  # shared by the subscriptions without predicates (most)


@dataclass(frozen=True)
class Entry:
    """What routing needs of a subscription, not the subscription itself (the follower keeps that)."""

    id: str
    event_types: tuple[str, ...]
    kommuner: frozenset[str] | None  # None: all kommuner
    public_body: bool
    predicates: Predicates  # one shared empty instance when it has none
    grants: dict[str, Grant]
    unconditional: bool  # no predicates: every event of its types and kommuner matches (the router skips the checks)
    id_bytes: bytes  # the id, UTF-8: written into every delivery record's key and JSON

    @classmethod
    def of(cls, sub: Subscription) -> Entry:
        # An event dated before a reform carries the code of then: a subscription to today's code
        # gets it too (Tromsø's 5501 also matches 5401 and 1902; a split code matches no heir).
        kommuner = None if sub.kommuner == ALL else frozenset(sub.kommuner).union(*map(older_codes, sub.kommuner))
        unconditional = not sub.predicates.model_dump(exclude_none=True)
        return cls(
            sub.id,
            tuple(sub.event_types),
            kommuner,
            sub.public_body,
            _NO_PREDICATES if unconditional else sub.predicates,
            {t: Grant.of(paths) for t, paths in sub.fields.items()},
            unconditional,
            sub.id.encode(),
        )


class RoutingIndex:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self._by_key: dict[tuple[str, str], dict[str, Entry]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, sub: Subscription) -> None:
        self.remove(sub.id)
        entry = self.entries[sub.id] = Entry.of(sub)
        for key in self._keys(entry):
            self._by_key.setdefault(key, {})[sub.id] = entry

    def remove(self, sub_id: str) -> None:
        entry = self.entries.pop(sub_id, None)
        if entry is None:
            return
        for key in self._keys(entry):
            bucket = self._by_key[key]
            del bucket[sub_id]
            if not bucket:
                del self._by_key[key]

    def candidates(self, event_type: str, kommuner: list[str], *, national_only: bool = False) -> list[Entry]:
        """Subscriptions to the event type for any of the kommuner or for all; `national_only`: only the latter."""
        national = self._by_key.get((ALL, event_type), {})
        found = national
        if not national_only:
            for kommune in kommuner:
                bucket = self._by_key.get((kommune, event_type))
                if bucket:  # a move's two kommuner may share a subscription: one entry each
                    found = {**found, **bucket}
        return list(found.values())

    @staticmethod
    def _keys(entry: Entry) -> list[tuple[str, str]]:
        kommuner = [ALL] if entry.kommuner is None else sorted(entry.kommuner)
        return [(k, t) for k in kommuner for t in entry.event_types]
