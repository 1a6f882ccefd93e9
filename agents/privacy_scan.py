"""Personal data found where none may be, in an app id's topics and in log files (docs/security.md).

    bus = await learn(bootstrap, app_id, Codec(registry))       # who is protected, the subscriptions
    findings, topics = await scan_topics(bootstrap, app_id, bus, subscriber_prefix, pseudonym_key)
    findings += scan_log(path, bus)

A Kafka subscriber's record is judged by its event's routing (from the events topic) and, for an
event no longer there, by the person's grade now: the record key is the subscription's own
pseudonym of the person, recognised with the bus's pseudonym key (SAMBAND_PSEUDONYM_KEY).

Kinds of finding:
- `identity_number`: 11 digits with valid control digits (synthetic ones too), outside a field
  the subscription was granted. A run inside a hex token (trace id, pseudonym, UUID) is random
  and is not counted.
- `protected_address`: an address field of a protected person in a delivery the grade forbids,
  or a street name of a strengt fortrolig person anywhere else.
- `protected_kommune`: a kommunenummer, or what reveals one (`source`, `scope`, `cause`, a
  kommune-scoped subscription), in a delivery of a person whose grade forbids it.
- `ungranted_field`: a delivered field the subscription was not granted.

A finding names the topic, partition and offset (or file and line), the kind and the field
path: never the value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agents.commands.dlq import REPLAY_HEADER
from agents.delivery.egress import subscriber_subject
from agents.subscriptions.delivery_target import AS_WRITTEN
from agents.subscriptions.model import Subscription
from bus.inspector import KafkaInspector
from bus.reading import read_topic
from bus.topics import EVENTS, INGEST, ROUTER_PERSONS, ROUTER_RECORDS, pull_topic_prefix, topic_names
from connectors.kafka_sink.sink import PURGE_TYPE, register_schemas
from connectors.pull.sink import pull_topic
from schemas.catalog import catalog
from schemas.codec import Codec, WireFormatError
from schemas.identity import IDENTITY_NUMBER_IN_TEXT, has_valid_control_digits
from schemas.protection import KOMMUNE_REVEALING, is_strict, stricter, withheld
from schemas.registry import CatalogRegistry

IDENTITY_NUMBER = "identity_number"
PROTECTED_ADDRESS = "protected_address"
PROTECTED_KOMMUNE = "protected_kommune"
UNGRANTED_FIELD = "ungranted_field"

# Topics that hold identity numbers and addresses by design, never read by anyone outside the bus.
INTERNAL = (INGEST, EVENTS, ROUTER_PERSONS, ROUTER_RECORDS)

_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_KOMMUNE_URN = re.compile(r"urn:no:kommune:\d{4}")
_KOMMUNE_REVEALING = ("scope", "cause")  # of a Move: relative to, or named by, the kommune


@dataclass(frozen=True)
class Finding:
    source: str  # topic or log file
    partition: int | None  # None for a log file
    position: int  # offset, or 1-based line number
    kind: str
    field: str | None = None  # field path where known; never a value
    subscription: str | None = None  # for a delivery

    def __str__(self) -> str:
        where = (
            f"{self.source} line {self.position}"
            if self.partition is None
            else f"{self.source} partition {self.partition} offset {self.position}"
        )
        detail = ", ".join(
            x
            for x in (
                f"field {self.field}" if self.field else "",
                f"subscription {self.subscription}" if self.subscription else "",
            )
            if x
        )
        return f"{where}: {self.kind}" + (f" ({detail})" if detail else "")


@dataclass(frozen=True)
class RoutedEvent:
    event_type: str
    person: str  # pseudonym
    index: int  # position among the person's events
    grade: str  # the protection it was routed under
    after: str  # the person's protection after it


@dataclass
class Bus:
    """What the scan knows of the bus: its events' grades, strengt fortrolig streets, subscriptions."""

    events: dict[str, RoutedEvent] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)  # pseudonym -> protection now
    # pseudonym -> [(ms, protection)] as the router wrote the person's state, oldest first (compaction
    # may have removed older ones)
    history: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    strict_streets: frozenset[str] = frozenset()
    # Every version of every subscription (deleted ones too: they received data), oldest first,
    # with the time (ms) it was written.
    versions: dict[str, list[tuple[int, Subscription]]] = field(default_factory=dict)

    def subscription(self, sub_id: str, at_ms: int | None = None) -> Subscription | None:
        """The version in force at `at_ms` (the earliest known before any), or the latest."""
        versions = self.versions.get(sub_id)
        if not versions:
            return None
        if at_ms is None:
            return versions[-1][1]
        return next((sub for written, sub in reversed(versions) if written <= at_ms), versions[0][1])

    def protected(self) -> set[str]:
        """Every person who held a grade other than ugradert at some time the scan can see."""
        return (
            {p for p, g in self.current.items() if g != "ugradert"}
            | {p for p, h in self.history.items() if any(g != "ugradert" for _, g in h)}
            | {e.person for e in self.events.values() if e.grade != "ugradert"}
        )

    def grade_at(self, person: str, at_ms: int) -> str:
        """The person's protection as the router had written it at `at_ms` (the earliest known before any)."""
        history = self.history.get(person)
        if not history:
            return self.current.get(person, "ugradert")
        return next((grade for written, grade in reversed(history) if written <= at_ms), history[0][1])


def has_identity_number(text: str) -> bool:
    return any(has_valid_control_digits(m.group()) for m in IDENTITY_NUMBER_IN_TEXT.finditer(text))


def received_paths(data: dict) -> dict[str, object]:
    """The field paths of a delivered `data` object (catalog notation) and their values."""
    paths = {f"envelope.{k}": v for k, v in (data.get("envelope") or {}).items()}
    paths.update({k: v for k, v in data.items() if k != "envelope"})
    return paths


def _street_names(value) -> Iterable[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "streetName" and isinstance(inner, str) and inner:
                yield inner
            else:
                yield from _street_names(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _street_names(inner)


def _street_pattern(streets: Iterable[str]) -> re.Pattern | None:
    names = sorted(set(streets), key=len, reverse=True)
    if not names:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, names)) + r")(?!\w)", re.IGNORECASE)


class TextScan:
    """Identity numbers and strengt fortrolig street names (also JSON-escaped) in free text."""

    def __init__(self, bus: Bus):
        self._streets = _street_pattern(bus.strict_streets)

    def kinds(self, text: str) -> list[str]:
        kinds = [IDENTITY_NUMBER] if has_identity_number(text) else []
        if self._streets is not None and self._streets.search(
            _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
        ):
            kinds.append(PROTECTED_ADDRESS)
        return kinds


# --- learning the bus -------------------------------------------------------------------------


async def learn(bootstrap: str, app_id: str, codec: Codec) -> Bus:
    """Grades from the events topic (replayed as the router applies them) and the router's
    persons changelog; every subscription ever on the subscriptions topic."""
    bus, persons, streets = Bus(), {}, {}
    async for record in read_topic(bootstrap, topic_names(app_id).events, timeout=300):
        try:
            event = codec.decode(record.value)
            envelope = event["envelope"]
            person = record.key.decode()
            event_type = envelope["type"].rpartition(".")[2]
        except (WireFormatError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
            continue
        carried = envelope.get("addressProtection")
        before, count = persons.get(person, ("ugradert", 0))
        granted = (
            event.get("protection")
            if event_type == "AddressProtectionChange" and envelope.get("changeKind") == "new"
            else None
        )
        after = granted or stricter(before, carried)
        bus.events[envelope["id"]] = RoutedEvent(event_type, person, count, stricter(after, carried), after)
        persons[person] = (after, count + 1)
        streets.setdefault(person, set()).update(_street_names(event))
    bus.current = {person: grade for person, (grade, _) in persons.items()}
    async for record in read_topic(bootstrap, topic_names(app_id).router_persons):
        try:
            person, grade = record.key.decode(), json.loads(record.value)["protection"]
            bus.current[person] = grade
            bus.history.setdefault(person, []).append((record.timestamp, grade))
        except (TypeError, ValueError, KeyError, AttributeError):
            continue
    strict = {event.person for event in bus.events.values() if is_strict(event.grade)}  # at any time
    bus.strict_streets = frozenset(s for person in strict for s in streets.get(person, ()))
    async for record in read_topic(bootstrap, topic_names(app_id).subscriptions):
        try:
            bus.versions.setdefault(record.key.decode(), []).append(
                (record.timestamp, Subscription.model_validate_json(record.value, context=AS_WRITTEN))
            )
        except (ValueError, TypeError, AttributeError):
            continue  # a tombstone keeps the last known version: it received data while it existed
    return bus


# --- deliveries -------------------------------------------------------------------------------


class DeliveryScan:
    """The rules for what reached, or is about to reach, a subscriber (docs/security.md)."""

    def __init__(self, bus: Bus):
        self.bus = bus
        # (topic, subscription, person) -> the protection change a purge enforced, in topic order
        self._purged: dict[tuple[str, str, str], RoutedEvent] = {}

    def grade(
        self, topic: str, subscription: str, event_id: str, person: str | None, replayed_ms: int | None = None
    ) -> str:
        """The grade a delivery must obey: the one it was routed under; for a dead letter replayed at
        `replayed_ms`, made stricter by the person's grade then; otherwise made stricter by any purge
        sent to the subscription before it for a change that came after the event."""
        event = self.bus.events.get(event_id)
        if event is None:
            return self.bus.current.get(person or "", "ugradert")
        if replayed_ms is not None:
            return stricter(event.grade, self.bus.grade_at(event.person, replayed_ms))
        purge = self._purged.get((topic, subscription, event.person))
        if purge is not None and purge.index > event.index:
            return stricter(event.grade, purge.after)
        return event.grade

    def check(
        self,
        topic: str,
        subscription: str,
        cloudevent: dict,
        data: dict,
        person: str | None = None,
        at_ms: int | None = None,
        replayed: bool = False,
    ) -> list[tuple[str, str | None]]:
        """(kind, field) of each finding in one delivery written at `at_ms` (by `dlq replay`, when
        `replayed`), judged by the subscription as it was then."""
        event_id = str(cloudevent.get("id", ""))
        if cloudevent.get("type") == PURGE_TYPE:
            change = self.bus.events.get(event_id.removesuffix("-purge"))
            if change is not None:
                self._purged[(topic, subscription, change.person)] = change
            return [(UNGRANTED_FIELD, key) for key in sorted(set(data) - {"delete"})]
        attributes = {k: v for k, v in cloudevent.items() if k != "data"}
        findings: list[tuple[str, str | None]] = []
        if has_identity_number(json.dumps(attributes, default=str)):
            findings.append((IDENTITY_NUMBER, "attributes"))
        event_type = str(cloudevent.get("type", "")).rpartition(".")[2]
        sub = self.bus.subscription(subscription, at_ms)
        granted = frozenset(sub.fields.get(event_type, ())) if sub else frozenset()
        public_body = bool(sub and sub.public_body)
        all_kommuner = bool(sub and sub.kommuner == "all")
        grade = self.grade(topic, subscription, event_id, person, at_ms if replayed else None)
        paths = received_paths(data)
        hidden = withheld(event_type, grade, public_body)
        for path, value in sorted(paths.items()):
            if path not in granted:
                kind = IDENTITY_NUMBER if has_identity_number(json.dumps(value, default=str)) else UNGRANTED_FIELD
                findings.append((kind, path))
            elif path in hidden and value and path not in KOMMUNE_REVEALING:  # those: below, as kommune findings
                findings.append((PROTECTED_KOMMUNE if path == "envelope.kommunenummer" else PROTECTED_ADDRESS, path))
        if is_strict(grade):
            if not all_kommuner:
                findings.append((PROTECTED_KOMMUNE, "subscription.kommuner"))
            for path, value in (
                ("source", cloudevent.get("source")),
                ("envelope.source", paths.get("envelope.source")),
            ):
                if isinstance(value, str) and _KOMMUNE_URN.search(value):
                    findings.append((PROTECTED_KOMMUNE, path))
            findings += [(PROTECTED_KOMMUNE, p) for p in _KOMMUNE_REVEALING if paths.get(p)]
        elif grade == "fortrolig" and not public_body and not all_kommuner:
            findings.append((PROTECTED_KOMMUNE, "subscription.kommuner"))
        return findings


# --- topics -----------------------------------------------------------------------------------


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", errors="replace") if value else ""


class TopicScan:
    def __init__(self, bus: Bus, subscriber_topics: dict[str, str], pseudonym_key: bytes | None = None):
        self.bus = bus
        # A Kafka subscriber's record key is its own pseudonym of the person (agents/delivery/egress.py):
        # with the bus's key, a protected person's is recognised even when the event has left the events topic.
        self._pseudonym_key = pseudonym_key
        self._persons_by_subject: dict[str, dict[bytes, str]] = {}
        self.text = TextScan(bus)
        self.deliveries = DeliveryScan(bus)
        self.registry = CatalogRegistry(
            catalog()
        )  # subscribers' projection schemas: ids are stable (schemas/schema_id.py)
        self.codec = Codec(self.registry)
        self.subscriber_topics = subscriber_topics  # topic -> subscription id
        self._registered: set[str] = set()

    def _raw(self, record, parts: Iterable[bytes | None]) -> list[Finding]:
        kinds = {kind for part in parts for kind in self.text.kinds(_text(part))}
        return [Finding(record.topic, record.partition, record.offset, kind) for kind in sorted(kinds)]

    def _headers(self, record) -> list[bytes]:
        return [value for _, value in record.headers or ()]

    def _delivery(self, record, subscription: str, cloudevent: dict, data: dict, person: str | None) -> list[Finding]:
        replayed = any(name == REPLAY_HEADER for name, _ in record.headers or ())
        return [
            Finding(record.topic, record.partition, record.offset, kind, path, subscription)
            for kind, path in self.deliveries.check(
                record.topic, subscription, cloudevent, data, person, record.timestamp, replayed
            )
        ]

    def delivery_record(self, record, text: bytes | str, headers: Iterable[bytes]) -> list[Finding]:
        """A delivery record (docs/architecture.md): its key and headers as text, its event by the rules."""
        try:
            delivery = json.loads(text)
            event = delivery["event"]
            findings = self._delivery(
                record, delivery["subscription"], event, event.get("data") or {}, delivery.get("person")
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return self._raw(record, [text if isinstance(text, bytes) else text.encode(), record.key, *headers])
        return findings + self._raw(record, [record.key, *headers])

    def pending(self, record) -> list[Finding]:
        try:
            queue = json.loads(record.value)["queue"]
        except (ValueError, TypeError, KeyError):
            return self._raw(record, [record.key, record.value])
        findings = []
        for entry in queue:
            headers = [str(v).encode() for _, v in entry.get("headers", ())]
            findings += self.delivery_record(record, entry.get("record", ""), headers)
        return findings

    def _person(self, subscription: str, key: bytes | None) -> str | None:
        if self._pseudonym_key is None or key is None:
            return None
        if subscription not in self._persons_by_subject:
            self._persons_by_subject[subscription] = {
                subscriber_subject(self._pseudonym_key, subscription, person).encode(): person
                for person in self.bus.protected()
            }
        return self._persons_by_subject[subscription].get(key)

    def subscriber(self, record) -> list[Finding]:
        """A Kafka subscriber's record: CloudEvents attributes in `ce_*` headers, Avro `data` (connectors/kafka_sink)."""
        subscription = self.subscriber_topics[record.topic]
        if record.topic not in self._registered:
            for _, sub in self.bus.versions.get(subscription, ()):
                register_schemas(self.registry, record.topic, sub.fields)
            self._registered.add(record.topic)
        attributes = {k.removeprefix("ce_"): _text(v) for k, v in record.headers or () if k.startswith("ce_")}
        try:
            data = self.codec.decode(record.value)
        except (WireFormatError, TypeError):
            return self._raw(record, [record.key, record.value, *self._headers(record)])
        return self._delivery(
            record, subscription, attributes, data, self._person(subscription, record.key)
        ) + self._raw(record, [record.key, *self._headers(record)])

    def record(self, record, kind: str) -> list[Finding]:
        if record.value is None:
            return self._raw(record, [record.key])
        if kind == "deliveries":
            return self.delivery_record(record, record.value, self._headers(record))
        if kind == "pending":
            return self.pending(record)
        if kind == "subscriber":
            return self.subscriber(record)
        return self._raw(record, [record.key, record.value, *self._headers(record)])


def subscriber_topics(bus: Bus, prefix: str) -> dict[str, str]:
    """Kafka subscribers' topics -> subscription id: each subscription's own, the prefix + its id."""
    return {f"{prefix}{sub_id}": sub_id for sub_id in bus.versions}


async def scan_topics(
    bootstrap: str, app_id: str, bus: Bus, subscriber_prefix: str, pseudonym_key: bytes | None = None
) -> tuple[list[Finding], list[str]]:
    """The findings in every topic of the app id and every subscriber topic, and the topics read."""
    subscribers = subscriber_topics(bus, subscriber_prefix)
    async with KafkaInspector(bootstrap) as kafka:
        existing = {tp.topic for tp in await kafka.topic_partitions()}
    internal = {topic.name(app_id) for topic in INTERNAL}
    mine = sorted(t for t in existing if (t.startswith(f"{app_id}-") or t in subscribers) and t not in internal)
    kinds = {
        topic_names(app_id).deliveries: "deliveries",
        topic_names(app_id).pending: "pending",
        # A pull subscription's topic holds delivery records as the router wrote them (connectors/pull).
        **{pull_topic(pull_topic_prefix(app_id), sub_id): "deliveries" for sub_id in bus.versions},
        **dict.fromkeys(subscribers, "subscriber"),
    }
    scan = TopicScan(bus, subscribers, pseudonym_key)
    findings: list[Finding] = []
    for topic in mine:
        async for record in read_topic(bootstrap, topic, timeout=300):
            findings += scan.record(record, kinds.get(topic, "other"))
    return findings, mine


def scan_log(path: Path, bus: Bus) -> list[Finding]:
    text = TextScan(bus)
    with path.open(encoding="utf-8", errors="replace") as lines:
        return [
            Finding(str(path), None, number, kind)
            for number, line in enumerate(lines, start=1)
            for kind in text.kinds(line)
        ]
