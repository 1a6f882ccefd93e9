"""Dead-letter records: the original bytes, encrypted, with the reason in readable headers.

One shape for every stage (source, ingest, route, deliver), see docs/architecture.md.
Messages must never contain personal data: callers pass reason codes and neutral text. The
value is sealed (`DeadLetterSeal`, AES-256-GCM with SAMBAND_DLQ_KEY): whoever reads the topic
sees the headers (reason, stage, place, event id and type), and only the key's holder the event.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

Headers = Sequence[tuple[str, bytes]]

PREFIX = "samband-dlq-"
STAGES = ("source", "ingest", "route", "deliver")


@dataclass(frozen=True)
class DeadLetter:
    reason: str  # stable code, e.g. "wire.truncated"
    message: str  # for people; no personal data
    stage: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    subscription: str | None = None
    event_id: str | None = None  # an identifier, never personal data: lets tools find a dead letter without the key
    event_type: str | None = None
    scrubbed: str | None = None  # "address" when the value was stripped of address data before sealing
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"dead-letter stage must be one of {', '.join(STAGES)}, not {self.stage!r}")

    def headers(self, original: Iterable[tuple[str, bytes]] = ()) -> list[tuple[str, bytes]]:
        """The original headers (our own dead-letter headers replaced) followed by this dead letter's."""
        ours = {
            "reason": self.reason,
            "message": self.message,
            "stage": self.stage,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "event-id": self.event_id,
            "event-type": self.event_type,
            "scrubbed": self.scrubbed,
            "time": self.time,
        }
        kept = [(k, v) for k, v in original if not k.startswith(PREFIX) and k != "samband-subscription"]
        kept += [(PREFIX + k, str(v).encode()) for k, v in ours.items() if v is not None]
        if self.subscription is not None:
            kept.append(("samband-subscription", self.subscription.encode()))
        return kept

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[str, bytes | None]]) -> DeadLetter:
        """Never fails: the original record's headers ride along and may hold any bytes, or none."""
        values = {
            k: v.decode("utf-8", "replace")
            for k, v in headers
            if v is not None and (k.startswith(PREFIX) or k == "samband-subscription")
        }
        get = lambda name: values.get(PREFIX + name)  # noqa: E731
        stage = get("stage")
        return cls(
            reason=get("reason") or "unknown",
            message=get("message") or "",
            stage=stage if stage in STAGES else "ingest",
            topic=get("topic"),
            partition=_number(get("partition")),
            offset=_number(get("offset")),
            subscription=values.get("samband-subscription"),
            event_id=get("event-id"),
            event_type=get("event-type"),
            scrubbed=get("scrubbed"),
            time=get("time") or "",
        )


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and text.isascii() and text.isdigit() else None


class DeadLetterKeyError(ValueError):
    """The dead-letter key is missing or malformed, or a dead letter does not open with it."""


class DeadLetterSeal:
    """AES-256-GCM over a dead letter's value: `SEALED` + 12-byte nonce + ciphertext and tag.

    A fresh random nonce per value; the associated data binds the ciphertext to its use, so a
    sealed value cannot pass for another kind of record sealed with the same key."""

    SEALED = b"SDL1"
    _CONTEXT = b"samband-deadletter"

    def __init__(self, key: bytes):
        if len(key) != 32:
            raise DeadLetterKeyError("a dead-letter key is 32 bytes (AES-256)")
        self._aead = AESGCM(key)

    def seal(self, value: bytes | None) -> bytes | None:
        if value is None:
            return None
        nonce = os.urandom(12)
        return self.SEALED + nonce + self._aead.encrypt(nonce, value, self._CONTEXT)

    def open(self, sealed: bytes | None) -> bytes | None:
        """The original value; DeadLetterKeyError when it was not sealed with this key."""
        if sealed is None:
            return None
        if not sealed.startswith(self.SEALED):
            raise DeadLetterKeyError("the value is not a sealed dead letter")
        nonce, body = sealed[4:16], sealed[16:]
        try:
            return self._aead.decrypt(nonce, body, self._CONTEXT)
        except InvalidTag:
            raise DeadLetterKeyError("the dead letter does not open with this key (SAMBAND_DLQ_KEY)") from None
