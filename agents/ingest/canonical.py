"""From one ingest message to one canonical event: decode, validate, normalise. No Kafka here.

    canonicaliser = Canonicaliser(Codec(registry), max_bytes=262_144)
    event = canonicaliser.canonical(value)      # Canonical, or raises Rejected(reason, message)

Input is Confluent wire-format Avro of any known version of a catalog record, or a
CloudEvents 1.0 JSON object (structured mode, below). Output is always Avro of the current
version of the event type: a message already in the current version passes through byte for
byte (the fast path), an older version is resolved to the current one and re-encoded.

CloudEvents JSON profile: the attributes id, source, type (`no.samband.events.<Type>`), time
(ISO 8601), specversion "1.0", optional subject and dataschema; Samband's envelope fields as
extension attributes in lower case: person, kommunenummer (a JSON array), addressprotection,
changekind, correctseventid, sequencenumber, correlationid; `data` holds the payload fields,
dates as ISO 8601 strings.

Reason codes are stable and never carry personal data; they come from schemas.codec
(wire.*), schemas.validation (identity.*, kommune.*, date.*, relation.*, envelope.*) and here:
ingest.oversized, ingest.unrecognised_format, event.unknown_type, cloudevent.invalid,
json.missing_field, json.field_type; and ingest.internal_error for a message that makes
this code fail unexpectedly (a bug: the message is dead-lettered, the pipeline goes on).
"""

from __future__ import annotations

from dataclasses import dataclass

import fastavro
from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate as avro_validate

from schemas import json_text
from schemas.catalog import EVENTS_NAMESPACE, UNKNOWN_EVENT, catalog
from schemas.cloudevents import CloudEventError, avro_error_field, record_from_cloudevent
from schemas.codec import Codec, WireFormatError, schema_id_of
from schemas.validation import validate


class Rejected(ValueError):
    """An ingest message that cannot become a canonical event. Neither field carries personal data.

    `record` is the decoded record when decoding got that far (to scrub a protected address
    from the dead letter), else None.
    """

    def __init__(self, reason: str, message: str, record: dict | None = None):
        super().__init__(message)
        self.reason = reason
        self.record = record


@dataclass(frozen=True)
class Canonical:
    event_type: str
    record: dict
    value: bytes  # Avro wire format, current schema version

    @property
    def event_id(self) -> str:
        return self.record["envelope"]["id"]


class Canonicaliser:
    def __init__(self, codec: Codec, max_bytes: int, ignore_unknown: bool = False):
        self.codec = codec
        self.max_bytes = max_bytes
        self.ignore_unknown = ignore_unknown  # CloudEvents JSON: drop unknown attributes and data fields
        cat = catalog()
        self._known = {t for t in cat.event_types() if t != UNKNOWN_EVENT}
        self._current_id = {t: codec.current_id(t) for t in cat.event_types()}
        self._current_schema = {t: fastavro.parse_schema(cat.current(t).schema) for t in cat.event_types()}
        # Event type of each writer schema id seen, so the type is known before decoding.
        self._type_of_id: dict[int, str] = {}

    def canonical(self, value: bytes | None) -> Canonical:
        try:
            return self._canonical(value)
        except Rejected:
            raise
        except Exception as exc:  # a bug must cost one dead letter, never the pipeline
            raise Rejected("ingest.internal_error", f"unexpected {type(exc).__name__} while decoding") from exc

    def _canonical(self, value: bytes | None) -> Canonical:
        if not value:
            raise Rejected("ingest.unrecognised_format", "empty message")
        if len(value) > self.max_bytes:
            raise Rejected("ingest.oversized", f"message of {len(value)} bytes exceeds the limit of {self.max_bytes}")
        if value[0] == 0:
            return self._from_avro(value)
        if value.lstrip()[:1] == b"{":
            return self._from_cloudevent(value)
        raise Rejected("ingest.unrecognised_format", "message is neither Confluent wire-format Avro nor a JSON object")

    # --- Avro -----------------------------------------------------------------------------

    def _from_avro(self, value: bytes) -> Canonical:
        try:
            schema_id = schema_id_of(value)
            event_type = self._type_of_id.get(schema_id) or self._learn_type(schema_id)
            if event_type not in self._known:
                raise Rejected("event.unknown_type", f"schema id {schema_id} is not a routable event type")
            current = self._current_id[event_type]
            if schema_id == current:
                record = self.codec.decode(value)
                return self._checked(event_type, record, value)
            record = self.codec.decode(value, reader=self._current_schema[event_type])
        except WireFormatError as exc:
            raise Rejected(exc.reason, str(exc)) from None
        return self._checked(event_type, record, self.codec.encode(record, current))

    def _learn_type(self, schema_id: int) -> str:
        name = self.codec.writer_schema(schema_id)["name"]
        namespace, _, short = name.rpartition(".")
        event_type = short if namespace == EVENTS_NAMESPACE else name
        self._type_of_id[schema_id] = event_type
        return event_type

    # --- CloudEvents JSON -----------------------------------------------------------------

    def _from_cloudevent(self, value: bytes) -> Canonical:
        try:
            event = json_text.loads(value)
        except ValueError:
            raise Rejected("ingest.unrecognised_format", "message starts like JSON but does not parse") from None
        if not isinstance(event, dict):
            raise Rejected("cloudevent.invalid", "a CloudEvent is a JSON object")
        if "specversion" not in event:
            raise Rejected("cloudevent.invalid", "not a CloudEvent: it has no specversion attribute")
        type_name = event.get("type")
        namespace, _, event_type = str(type_name).rpartition(".")
        if namespace != EVENTS_NAMESPACE or event_type not in self._known:
            raise Rejected("event.unknown_type", f"event type {str(type_name)[:100]!r} is not in the catalog")
        try:
            record = record_from_cloudevent(event_type, event, ignore_unknown=self.ignore_unknown)
        except CloudEventError as exc:
            raise Rejected(exc.reason, str(exc)) from None
        try:
            avro_validate(record, self._current_schema[event_type], raise_errors=True)
        except AvroValidationError as exc:
            field = avro_error_field(event_type, exc.errors)
            raise Rejected("json.field_type", f"{field} has the wrong type") from None
        value = self.codec.encode(record, self._current_id[event_type])
        # Validate what Avro readers will see (a date given as a day number becomes a date).
        return self._checked(event_type, self.codec.decode(value), value)

    # --- domain rules ---------------------------------------------------------------------

    def _checked(self, event_type: str, record: dict, value: bytes) -> Canonical:
        failures = validate(event_type, record)
        if failures:
            codes = ", ".join(f"{f.field}: {f.code}" for f in failures)
            raise Rejected(failures[0].code, f"{event_type} fails validation ({codes})", record)
        return Canonical(event_type, record, value)
