"""A CloudEvent (JSON object) -> the Avro wire value of its validated catalog record.

The profile is the one `samband-ingest` accepts (docs/architecture.md): attributes id, source,
type (`no.samband.events.<Type>`), time (ISO 8601 with zone), specversion "1.0", optional
subject and dataschema; Samband's envelope fields as lower-case extension attributes (person,
kommunenummer, addressprotection, changekind, correctseventid, sequencenumber, correlationid);
`data` holds the payload fields, dates as ISO 8601 strings. The record must fit the current
Avro schema of its type and pass schemas.validation; otherwise `Refused` with one Problem
per failure.
"""

from __future__ import annotations

import fastavro
from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate as avro_validate

from connectors.http_ingest.problems import Problem, Refused
from schemas.catalog import EVENTS_NAMESPACE, UNKNOWN_EVENT, catalog
from schemas.cloudevents import CloudEventError, avro_error_field, client_field, record_from_cloudevent
from schemas.codec import Codec
from schemas.protection import is_strict
from schemas.validation import Failure, validate

# A municipal system reports where a birth, death or move happens. (Not a rule of the bus: the
# register gives a death no kommune, and a strengt fortrolig person's events carry none.)
NEEDS_KOMMUNE = frozenset({"Birth", "Death", "Move"})


def _kommune_missing(event_type: str, envelope: dict) -> list[Failure]:
    if (
        event_type in NEEDS_KOMMUNE
        and not envelope.get("kommunenummer")
        and envelope.get("changeKind", "new") == "new"
        and not is_strict(envelope.get("addressProtection", "ugradert"))
    ):
        return [Failure("kommune.missing", "envelope.kommunenummer", f"a {event_type} names the kommune it concerns")]
    return []


def _invalid(code: str, field: str, message: str) -> Refused:
    return Refused([Problem(code, field, message)])


class EventEncoder:
    def __init__(self, codec: Codec, ignore_unknown: bool = False):
        self.codec = codec
        self.ignore_unknown = ignore_unknown  # drop unknown attributes and data fields instead of refusing
        cat = catalog()
        self.known = frozenset(t for t in cat.event_types() if t != UNKNOWN_EVENT)
        self._current_id = {t: codec.current_id(t) for t in self.known}
        self._schema = {t: fastavro.parse_schema(cat.current(t).schema) for t in self.known}

    @staticmethod
    def not_a_cloudevent(event: dict) -> Problem | None:
        """Why `event` is no CloudEvent at all (it names no specversion), or None."""
        if "specversion" not in event:
            return Problem("cloudevent.invalid", "specversion", "not a CloudEvent: it has no specversion attribute")
        return None

    def event_type(self, event: dict) -> str | None:
        """The catalog event type the CloudEvent names, or None when it names none."""
        namespace, _, short = str(event.get("type")).rpartition(".")
        return short if namespace == EVENTS_NAMESPACE and short in self.known else None

    def encode(self, event_type: str, event: dict) -> bytes:
        """Avro wire format (current schema) of the event's record; raises Refused."""
        record = self._record(event_type, event)
        schema = self._schema[event_type]
        try:
            avro_validate(record, schema, raise_errors=True)
        except AvroValidationError as exc:  # its text quotes the value: only the field name goes out
            field = avro_error_field(event_type, exc.errors)
            raise _invalid("json.field_type", field, f"{field} has the wrong type") from None
        value = self.codec.encode(record, self._current_id[event_type])
        # What Avro readers will see; a missing kommune first, as the envelope's own fault.
        failures = _kommune_missing(event_type, record["envelope"]) + validate(event_type, self.codec.decode(value))
        if failures:
            raise Refused([Problem(f.code, client_field(event_type, f.field), f.message) for f in failures])
        return value

    def _record(self, event_type: str, event: dict) -> dict:
        for attribute in ("id", "source"):
            if not isinstance(event.get(attribute), str) or not event[attribute]:
                raise _invalid("cloudevent.invalid", attribute, f"{attribute} must be a non-empty string")
        if event.get("datacontenttype") not in (None, "application/json"):
            raise _invalid("cloudevent.invalid", "datacontenttype", "data must be application/json")
        try:
            return record_from_cloudevent(event_type, event, ignore_unknown=self.ignore_unknown)
        except CloudEventError as exc:
            raise _invalid(exc.reason, exc.field, str(exc)) from None
