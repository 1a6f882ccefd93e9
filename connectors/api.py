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

Sink (takes deliveries out of the bus: a delivery kind, like Quix Streams' Sink / a Singer target)::

    class MySink(Sink):
        Config = MySinkConfig          # the subscription's `delivery` object, less `kind`

        async def write(self, batch: Sequence[SinkRecord]) -> list[Outcome]:
            return [Outcome.delivered() for record in batch]

A sink is one subscription's way out: the delivery stage makes one per subscription
(`context.subscriber` says whom it serves), calls `start`, then `write` with batches of at
most `max_batch` records, at most `max_concurrency` writes at a time, and acts on one
`Outcome` per record, in order: `delivered`, `retry` (transient, try again later) or
`rejected` (permanent: the delivery stage dead-letters it with the outcome's reason). Each
record in one batch is a different person's; a person's next record comes only after this
one's outcome. `write` must be idempotent per idempotency key (the record's value holds it): a record may be
written again after a crash. What else a kind declares: `verify` (the handshake before the
first delivery and after the `endpoint` changes), `refusal` (why the bus must refuse a
subscription's target at once, before anything is sent) and `stop` (close what it opened).

Sources are found through the entry-point group `samband.connectors` (name -> class), which
`samband connectors run` runs; delivery kinds through `samband.delivery_kinds` (the `kind` a
subscription names -> Sink class), which the delivery stage runs. A third-party connector or kind lives in its own
package; see docs/connectors.md.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

if TYPE_CHECKING:
    import structlog

    from connectors.dead_letters import DeadLetter

ENTRY_POINT_GROUP = "samband.connectors"
DELIVERY_KINDS_GROUP = "samband.delivery_kinds"

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
    "Subscriber",
    "delivery_kinds",
    "discover",
    "sink_record",
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
    """One delivery as it leaves the bus: for a delivery kind, `key` is the subscription's own
    pseudonym of the person (the event's `subject`) and `value` the JSON
    `{"idempotency_key", "subscription", "kind": "event" | "purge", "event": <CloudEvent>}`, after
    the protection rule (docs/architecture.md, delivery record, less the bus's `person`)."""

    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()
    topic: str = ""
    partition: int = 0
    offset: int = 0


def sink_record(delivery: dict, headers: Sequence[tuple[str, bytes]] = ()) -> SinkRecord:
    """The record of a parsed delivery: keyed by the event's subject, its value the delivery's JSON."""
    return SinkRecord(delivery["event"]["subject"].encode(), orjson.dumps(delivery), headers)


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


@dataclass(frozen=True)
class Subscriber:
    """Whom a delivery kind's sink serves, as the bus knows it: never taken from the `delivery`
    object itself, so no subscription can name another's topic, folder or secret."""

    id: str  # the subscription id
    fields: Mapping[str, Sequence[str]] = field(default_factory=dict)  # granted fields per event type


@dataclass
class Context:
    instance: str  # the connector instance name, e.g. "folkeregister-main"; key of its state
    output: Output
    dead_letters: DeadLetters
    state: StateStore
    log: structlog.stdlib.BoundLogger  # already bound with connector=<instance>
    # What the bus lends a connector; for a delivery kind (docs/connectors.md): "topic_writer",
    # "ensure_topic", "schema_registry", "subscriber_topic_prefix", "webhook_allow", "secrets_dir",
    # "files_root", "files_quota_bytes" (docs/connectors.md). Each sink gets a copy of its own,
    # whose topic writer touches only the subscriber's own topic. A kind takes what it needs.
    extras: dict[str, Any] = field(default_factory=dict)
    subscriber: Subscriber | None = None  # set for a delivery kind's sink


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
        """Release what start() opened. Called once, also after a failed run, and on a delivery
        kind's sink that was made only to `verify` and never started."""


class Source(Connector):
    kind = "source"

    def __init__(self, config: ConnectorConfig, context: Context):
        super().__init__(config, context)
        self.stopping = asyncio.Event()  # set by the runtime; run() returns soon after

    async def run(self) -> None:
        """Work until `self.stopping` is set: read, `output.send`, then `state.save`."""
        raise NotImplementedError


class Sink(Connector):
    """A way out of the bus. What the delivery stage needs of a delivery kind is declared here;
    every method but `write` has a default that suits a kind with nothing to check."""

    kind = "sink"
    # Records per `write`: 1 writes each delivery alone; more lets delivery hand over several
    # persons' heads in one call, e.g. one fsync per batch. A kind may set it per subscription.
    max_batch: int = 1
    # Seconds a `write` of fewer than `max_batch` records waits for more heads to fill it.
    batch_wait: float = 0.0
    # The size of a write's delivery records together, at most (one record is always taken): for a
    # kind that sends a write as one request of a limited size. None: no limit.
    max_batch_bytes: int | None = None
    # True only for a kind of the bus's own that keeps deliveries inside the bus (the pull kind):
    # `write` then gets the delivery record itself, keyed by the bus's pseudonym of the person, and the
    # protection rule runs when it finally leaves. Any other kind gets the record as it leaves now.
    takes_delivery_records: ClassVar[bool] = False

    @property
    def max_concurrency(self) -> int:
        """`write` calls in flight at once: the config's `max_concurrency` when it has one, else 1."""
        return int(getattr(self.config, "max_concurrency", 1))

    @classmethod
    def endpoint(cls, config: ConnectorConfig, subscription: str) -> object:
        """What identifies where deliveries go (JSON-able). When it changes (or the kind does),
        `verify` runs again before anything more is sent. Default: the subscription and the whole config."""
        return [subscription, config.model_dump(mode="json")]

    @classmethod
    def refusal(cls, config: ConnectorConfig, subscription: str, bus: Mapping[str, Any] | None) -> str | None:
        """Why the bus must refuse this target for `subscription` when it is written, as
        "<field>: <what to do>" without values; None when it may be used. `bus` holds what the bus
        lends from its settings (`webhook_allow`, `secrets_dir`, `subscriber_topic_prefix`,
        `files_root`: agents/delivery/target.py `bus_lends`); it is None for a reader that only
        learns what was written, and then the checks that depend on this bus's settings are skipped."""
        return None

    async def verify(self, subscription: str) -> Outcome:
        """The handshake before the first delivery (and after the endpoint changes); retried on the
        subscription's retry schedule until `delivered`. Called on a sink that was not started."""
        return Outcome.delivered()

    async def write(self, batch: Sequence[SinkRecord]) -> list[Outcome]:
        """One Outcome per record, in order. Must be idempotent under re-delivery."""
        raise NotImplementedError

    async def write_delivery(self, delivery: dict, headers: Sequence[tuple[str, bytes]]) -> Outcome:
        """One delivery, parsed (the `SinkRecord` value's JSON): the delivery stage calls it for a
        head that goes alone. A sink that works on the parsed delivery overrides it to skip the
        encoding (the webhook kind does); by default `write([sink_record(delivery, headers)])`."""
        [outcome] = await self.write([sink_record(delivery, headers)])
        return outcome

    async def write_deliveries(self, deliveries: Sequence[tuple[dict, Sequence[tuple[str, bytes]]]]) -> list[Outcome]:
        """Several deliveries, parsed, one Outcome each, in order: what the delivery stage calls for
        a batch of heads. By default `write` of their records; a kind that works on parsed deliveries
        overrides it (the webhook kind does)."""
        return await self.write([sink_record(delivery, headers) for delivery, headers in deliveries])

    async def flush(self) -> None:
        """Make every record answered `delivered` visible to the subscriber now (e.g. finish an open
        batch file). Called before the delivery stage hands partitions to another worker, so that
        worker's later records for the same persons cannot be seen first. Default: nothing held."""


def delivery_kinds() -> dict[str, type[Sink]]:
    """Installed delivery kinds by the name a subscription's `delivery.kind` gives (group
    `samband.delivery_kinds`). Read once per process: a kind installed later needs a restart."""
    return dict(_delivery_kinds())


@functools.cache
def _delivery_kinds() -> tuple[tuple[str, type[Sink]], ...]:
    found: dict[str, type[Sink]] = {}
    for ep in entry_points(group=DELIVERY_KINDS_GROUP):
        if ep.name in found:  # two packages claim one name: neither may silently replace the other
            raise TypeError(f"delivery kind {ep.name!r} is registered twice ({ep.value} and another package)")
        try:
            cls = ep.load()
        except Exception as exc:
            raise TypeError(f"delivery kind {ep.name!r} ({ep.value}) cannot be loaded: {type(exc).__name__}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Sink)):
            raise TypeError(f"delivery kind {ep.name!r} ({ep.value}) is not a Sink class")
        reserved = {"kind", "retry_schedule", "paused", "windows"} & set(cls.Config.model_fields)
        if reserved:
            raise TypeError(f"delivery kind {ep.name!r}: config fields {sorted(reserved)} are the delivery stage's own")
        found[ep.name] = cls
    return tuple(sorted(found.items()))


def discover() -> dict[str, type[Source]]:
    """Installed source connectors by entry-point name (group `samband.connectors`)."""
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if isinstance(cls, type) and issubclass(cls, Sink):
            raise TypeError(f"entry point {ep.name!r} ({ep.value}) is a Sink: register it in {DELIVERY_KINDS_GROUP}")
        if not (isinstance(cls, type) and issubclass(cls, Source)):
            raise TypeError(f"entry point {ep.name!r} ({ep.value}) is not a Source class")
        found[ep.name] = cls
    return dict(sorted(found.items()))
