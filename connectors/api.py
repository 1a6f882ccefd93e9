"""The connector plugin API: what a source or a sink implements, and what it is given.

A connector is a class with a declared, validated config and an async lifecycle.
It never builds Kafka clients itself: the runtime (`connectors.runtime`) gives it a
`Context` with everything it may touch.

Source (brings events into the bus, like Quix Streams' Source / a Singer tap)::

    class MyConfig(ConnectorConfig):
        url: str
        token: SecretStr               # secrets: never echoed in errors or logs

    class MySource(Source):
        Config = MyConfig

        async def run(self) -> None:
            bookmark = await self.context.state.load() or {"position": 0}
            while not self.stopping.is_set():
                records = ...                                   # read from the outside world
                await self.context.output.send(records)         # returns once durable (acks=all)
                await self.context.state.save({"position": ...})  # only after the send
                await self.context.dead_letters.send(raw, DeadLetter(...))  # bad input, never stop

`start()` opens what the source needs, `run()` works until `stopping` is set (the runtime
sets it on stop), `stop()` releases. A source that saves its bookmark only after `output.send`
returns resumes exactly after a crash; re-sent records carry the same key (event id), and
ingest deduplicates by it.

Sink (takes deliveries out of the bus, like Quix Streams' Sink / a Singer target)::

    class MySink(Sink):
        Config = MySinkConfig

        async def write(self, batch: Sequence[SinkRecord]) -> list[Outcome]:
            return [Outcome.delivered() for record in batch]

The delivery stage consumes `samband-deliveries`, calls `write` with a batch, and acts on
one `Outcome` per record, in order: `delivered`, `retry` (transient, try again later) or
`rejected` (permanent: the delivery stage dead-letters it with the outcome's reason).
`write` must be idempotent per `SinkRecord.key`-plus-content: a batch may be written again
after a crash.

Connectors are found through the entry-point group `samband.connectors` (name -> class),
so a third-party connector lives in its own package; see docs/connectors.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

if TYPE_CHECKING:
    import structlog

    from connectors.dead_letters import DeadLetter

ENTRY_POINT_GROUP = "samband.connectors"

__all__ = [
    "ConfigError",
    "ConnectorConfig",
    "Context",
    "Outcome",
    "OutputRecord",
    "SecretStr",
    "Sink",
    "SinkRecord",
    "Source",
    "discover",
]


class ConfigError(ValueError):
    """A connector config is invalid. The message names each bad field, never its value."""

    def __init__(self, connector: str, problems: list[tuple[str, str]]):
        self.problems = problems  # (field path, what is wrong)
        lines = "; ".join(f"{path}: {what}" for path, what in problems)
        super().__init__(f"invalid config for connector {connector!r}: {lines}")


class ConnectorConfig(BaseModel):
    """Base of every connector's config. Unknown keys are errors (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- records in and out -------------------------------------------------------------------


@dataclass(frozen=True)
class OutputRecord:
    """One event for `samband-ingest`: key = event id, value = wire-format Avro or CloudEvents JSON."""

    key: str
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(frozen=True)
class SinkRecord:
    """One record from `samband-deliveries` (see docs/architecture.md, delivery record)."""

    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()
    topic: str = ""
    partition: int = 0
    offset: int = 0


@dataclass(frozen=True)
class Outcome:
    status: Literal["delivered", "retry", "rejected"]
    reason: str | None = None  # stable code for retry/rejected, e.g. "delivery.rejected"
    message: str = ""  # for people; no personal data

    @classmethod
    def delivered(cls) -> Outcome:
        return cls("delivered")

    @classmethod
    def retry(cls, reason: str, message: str = "") -> Outcome:
        return cls("retry", reason, message)

    @classmethod
    def rejected(cls, reason: str, message: str = "") -> Outcome:
        return cls("rejected", reason, message)


# --- what the runtime gives a connector ---------------------------------------------------


class Output:
    """Writes to `samband-ingest`. Implemented by connectors.output.KafkaOutput."""

    async def send(self, records: Sequence[OutputRecord]) -> None:
        """Return only once every record is durably written (acks=all); raise if not."""
        raise NotImplementedError


class DeadLetters:
    """Writes to `samband-deadletter`. Implemented by connectors.output.KafkaDeadLetters."""

    async def send(self, key: bytes | None, value: bytes, dead_letter: DeadLetter) -> None:
        """The raw input, unchanged, with the reason in headers; returns once durable."""
        raise NotImplementedError


class StateStore:
    """The connector instance's bookmark. Implemented by connectors.bookmarks.KafkaStateStore."""

    async def load(self) -> dict | None:
        raise NotImplementedError

    async def save(self, bookmark: dict) -> None:
        """Return only once the bookmark is durable."""
        raise NotImplementedError

    async def reset(self) -> None:
        """Forget the bookmark: the source starts again from its configured beginning."""
        raise NotImplementedError


@dataclass
class Context:
    instance: str  # the connector instance name, e.g. "folkeregister-main"; key of its state
    output: Output
    dead_letters: DeadLetters
    state: StateStore
    log: structlog.stdlib.BoundLogger  # already bound with connector=<instance>
    extras: dict[str, Any] = field(default_factory=dict)


# --- the connector classes ----------------------------------------------------------------


class Connector:
    kind: ClassVar[Literal["source", "sink"]]
    Config: ClassVar[type[ConnectorConfig]] = ConnectorConfig
    description: ClassVar[str] = ""

    def __init__(self, config: ConnectorConfig, context: Context):
        self.config = config
        self.context = context
        self.log = context.log

    @classmethod
    def parse_config(cls, raw: Mapping[str, Any]) -> ConnectorConfig:
        """Validate a raw mapping (from a file or env); ConfigError names fields, never values."""
        try:
            return cls.Config.model_validate(dict(raw))
        except ValidationError as exc:
            problems = [(".".join(str(p) for p in e["loc"]) or "(config)", e["msg"]) for e in exc.errors()]
            raise ConfigError(cls.__name__, problems) from None

    @classmethod
    def config_schema(cls) -> dict:
        return cls.Config.model_json_schema()

    async def start(self) -> None:
        """Open connections; raise to refuse to start (the runtime reports it)."""

    async def stop(self) -> None:
        """Release what start() opened. Called once, also after a failed run."""


class Source(Connector):
    kind = "source"

    def __init__(self, config: ConnectorConfig, context: Context):
        super().__init__(config, context)
        self.stopping = asyncio.Event()  # set by the runtime; run() returns soon after

    async def run(self) -> None:
        """Work until `self.stopping` is set: read, `output.send`, then `state.save`."""
        raise NotImplementedError


class Sink(Connector):
    kind = "sink"

    async def write(self, batch: Sequence[SinkRecord]) -> list[Outcome]:
        """One Outcome per record, in order. Must be idempotent under re-delivery."""
        raise NotImplementedError


def discover() -> dict[str, type[Connector]]:
    """Installed connectors by entry-point name (group `samband.connectors`)."""
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, (Source, Sink))):
            raise TypeError(f"entry point {ep.name!r} ({ep.value}) is not a Source or Sink class")
        found[ep.name] = cls
    return dict(sorted(found.items()))
