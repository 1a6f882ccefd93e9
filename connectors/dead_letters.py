"""Dead-letter records: the original bytes, unchanged, with the reason in headers.

One shape for every stage (source, ingest, route, deliver), see docs/architecture.md.
Messages must never contain personal data: callers pass reason codes and neutral text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

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
            "time": self.time,
        }
        kept = [(k, v) for k, v in original if not k.startswith(PREFIX) and k != "samband-subscription"]
        kept += [(PREFIX + k, str(v).encode()) for k, v in ours.items() if v is not None]
        if self.subscription is not None:
            kept.append(("samband-subscription", self.subscription.encode()))
        return kept

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[str, bytes]]) -> DeadLetter:
        values = {k: v.decode() for k, v in headers}
        get = lambda name: values.get(PREFIX + name)  # noqa: E731
        return cls(
            reason=get("reason") or "unknown",
            message=get("message") or "",
            stage=get("stage") or "ingest",
            topic=get("topic"),
            partition=int(get("partition")) if get("partition") else None,
            offset=int(get("offset")) if get("offset") else None,
            subscription=values.get("samband-subscription"),
            time=get("time") or "",
        )
