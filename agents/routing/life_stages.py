"""Life-stage events: the router derives them from the birth dates it knows (docs/life-stages.md).

The stages are catalog event types (schemas/life_stages.py). The router keeps, in each
person's state (router.PersonState), what it takes to emit them: the birth date, the identity
number (sealed with SAMBAND_DLQ_KEY: the stage event must name the person), the person's
kommune, the day the bus learned the birth date, the stages already emitted, and whether the
person has died or emigrated. `observe` updates that from each event the router routes.

A stage is emitted on its date (Europe/Oslo), or at the first chance after it when the bus was
down, if the bus learned the birth date on or before that date: a person who immigrates at 40 gets
no Adulthood, and an old feed read anew sends no stage of the past. It goes into the events topic, in the person's partition, as a normal canonical
event: it comes back to the router and is routed, projected and protected like any other. Its
id is derived from the person's pseudonym and the stage, so a restart or a rebalance that emits it
again emits the same event (the same idempotency key at every subscriber). Death or Emigration
ends the person's stages; an annulled Birth retracts the stages emitted (an annulment of each).
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import structlog

from agents import tracing
from agents.config import Settings
from agents.routing.router import PersonState, birth_date_from_number
from bus.batches import Write
from bus.state import PartitionedState
from connectors.dead_letters import DeadLetterKeyError, DeadLetterSeal
from schemas.catalog import EVENTS_NAMESPACE, catalog
from schemas.codec import Codec
from schemas.life_stages import LifeStage, life_stages
from schemas.protection import is_strict

SOURCE = "urn:no:samband:life-stages"
OSLO = ZoneInfo("Europe/Oslo")
log = structlog.get_logger(__name__)
# The event types that change what the router keeps for a person's stages.
LIFE_EVENTS = frozenset(
    {"Birth", "Immigration", "PopulationRecord", "Move", "Death", "Emigration", "AddressProtectionChange"}
)
# The event types a birth date is learned from.
TEACHING = frozenset({"Birth", "Immigration", "PopulationRecord"})
_IDS = uuid.UUID("6f0b0c55-2a4e-4b8e-9b8e-1ec5a1f1e5a6")  # namespace of stage event ids


class NumberSeal(DeadLetterSeal):
    """The identity number in a person's state, sealed like a dead letter but bound to this use."""

    _CONTEXT = b"samband-person-number"


def life_clock(settings: Settings) -> Callable[[], float]:
    """The clock stages go by: the system's, or the simulated one of a development or demo run."""
    start = settings.life_stages_simulated_start
    if start is None:
        return time.time
    if start.tzinfo is None:
        start = start.replace(tzinfo=OSLO)
    began, origin, speed = time.time(), start.timestamp(), settings.life_stages_simulated_speed
    log.warning("life_stages.simulated_clock", start=start.isoformat(), speed=speed)
    return lambda: origin + (time.time() - began) * speed


def stage_event_id(person: str, stage: str, born: date, known: date, change: str = "new") -> str:
    """The one id of `stage` for the person with pseudonym `person` (or of its annulment), however
    often it is emitted. The birth date and the day the bus learned it are part of it: after an
    annulled Birth, a new one gives the stage a new id, which no subscriber drops as a repeat."""
    name = f"{person}/{stage}/{born.isoformat()}/{known.isoformat()}"
    return str(uuid.uuid5(_IDS, name if change == "new" else f"{name}/{change}"))


HORIZON_DAYS = 32


class LifeStages:
    """The router's life-stage scheduler, per partition it owns: what it learns from events
    (`observe`), each person's next date (`schedule`, `recovered`), and the stages due (`emit_due`)."""

    def __init__(
        self,
        codec: Codec,
        seal: NumberSeal,
        persons: PartitionedState,
        events_topic: str,
        clock: Callable[[], float] = time.time,
    ):
        self.codec = codec
        self.seal = seal
        self.persons = persons
        self.events_topic = events_topic
        self.clock = clock
        self.stages = sorted(life_stages().values(), key=lambda s: s.name)
        # Per partition: a heap of (date, person) and each person's date in it (older entries are stale),
        # of the dates up to `horizon` only: a register extract gives every person under 80 a stage
        # to come, 5.5 M entries (about 1 GiB) if all were kept. The later ones are found by a scan of
        # the person table (on disk) when the horizon moves, every HORIZON_DAYS / 2.
        self.heaps: dict[int, list[tuple[date, str]]] = defaultdict(list)
        self.scheduled: dict[int, dict[str, date]] = defaultdict(dict)
        self.horizon = self.today() + timedelta(days=HORIZON_DAYS)

    def today(self) -> date:
        return datetime.fromtimestamp(self.clock(), OSLO).date()

    # --- what the router learns from events ------------------------------------------------

    def observe(self, event_type: str, record: dict, state: PersonState) -> PersonState:
        """The person's state with what this event says about their life stages."""
        if state.number is None and event_type not in TEACHING:
            return state  # a person without stages to come: nothing to keep (most persons, most events)
        envelope = record["envelope"]
        kind = envelope["changeKind"]
        strict = is_strict(state.protection)
        if strict and state.kommune is not None:  # no kommune of a strengt fortrolig person is kept, not even here
            state = state._replace(kommune=None)
        if event_type in ("Death", "Emigration"):
            departed = kind != "annulment"
            return state if state.departed == departed else state._replace(departed=departed)
        if event_type == "Birth" and kind == "annulment":
            # The stages already emitted are retracted by `retractions`; no new ones.
            return state._replace(birth_date=None, number=None, known_since=None)
        changes: dict = {}
        if not strict and (kommune := _kommune(event_type, record)) is not None and kommune != state.kommune:
            changes["kommune"] = kommune
        if event_type in TEACHING and kind != "annulment":
            birth = state.birth_date if event_type == "Immigration" else record["birthDate"]
            learned = self.today()  # when the bus learned it, not the event's time: an old feed read
            # anew must not send every stage of a child's life at once
            if birth is None:
                birth = birth_date_from_number(envelope["person"], learned)
            if birth is not None:
                changes["birth_date"] = birth
                if state.number is None or kind == "new":
                    changes["number"] = self.seal.seal(envelope["person"].encode()).hex()
                if state.known_since is None or event_type == "Immigration":  # back in Norway: from now
                    changes["known_since"] = learned
                if event_type == "Immigration":
                    changes["departed"] = False
        return state._replace(**changes) if changes else state

    def pending(self, state: PersonState) -> list[tuple[date, LifeStage]]:
        """The person's stages still to emit, with their dates: none once they died or emigrated, and
        none dated before the bus learned the birth date."""
        born, known = state.birth_date, state.known_since
        if state.departed or born is None or known is None or state.number is None:
            return []
        return [
            (on, stage)
            for stage in self.stages
            if stage.name not in state.stages and (on := stage.date_for(born)) >= known
        ]

    def next_date(self, state: PersonState) -> date | None:
        """The date of the person's next stage not yet emitted, if any is to come."""
        return min((on for on, _ in self.pending(state)), default=None)

    def schedule(self, partition: int, person: str, state: PersonState) -> None:
        when = self.next_date(state)
        scheduled = self.scheduled[partition]
        if when is None or when > self.horizon:  # none to come, or found by a later scan
            scheduled.pop(person, None)
        elif scheduled.get(person) != when:
            scheduled[person] = when
            heapq.heappush(self.heaps[partition], (when, person))

    def recovered(self, partitions: set[int]) -> None:
        """Schedule every person of the partitions just recovered; forget partitions gone."""
        for gone in set(self.heaps) - set(self.persons.partitions):
            self.heaps.pop(gone, None)
            self.scheduled.pop(gone, None)
        self._scan(partitions)

    def _follow_horizon(self) -> None:
        """Half the horizon passed: move it, and scan every person again for the dates it now holds."""
        today = self.today()
        if today + timedelta(days=HORIZON_DAYS // 2) > self.horizon:
            self.horizon = today + timedelta(days=HORIZON_DAYS)
            self._scan(set(self.persons.partitions))

    def _scan(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.heaps[partition], self.scheduled[partition] = [], {}
            for person, value in self.persons.partitions.get(partition, {}).items():
                # Only a person with a sealed number can have stages to come: most persons are skipped
                # without parsing their state (to_json writes "number" only then).
                if b'"number"' in value:
                    self.schedule(partition, person, PersonState.from_json(value))

    # --- emitting ---------------------------------------------------------------------------

    def due(self) -> bool:
        self._follow_horizon()
        today = self.today()
        return any(heap and heap[0][0] <= today for heap in self.heaps.values())

    def emit_due(self, outputs: list[Write]) -> None:
        """Every stage due by today, as canonical events into the events topic, and the state that says so."""
        self._follow_horizon()
        today = self.today()
        for partition, heap in self.heaps.items():
            scheduled = self.scheduled[partition]
            while heap and heap[0][0] <= today:
                when, person = heapq.heappop(heap)
                if scheduled.get(person) != when:
                    continue  # stale: rescheduled or ended since
                del scheduled[person]
                state = PersonState.from_json(self.persons.get(partition, person))
                due = [stage for on, stage in self.pending(state) if on <= today]
                try:
                    outputs += [self._event(partition, person, state, stage) for stage in due]
                except DeadLetterKeyError:  # sealed under another SAMBAND_DLQ_KEY: the person cannot be named
                    log.warning("life_stages.number_unreadable", partition=partition)
                    state = state._replace(number=None)  # no stage for them until a Birth or Immigration again
                    due = []
                if due or state.number is None:
                    state = state._replace(stages=state.stages.union(stage.name for stage in due))
                    self.persons.set(partition, person, state.to_json())
                self.schedule(partition, person, state)

    def retractions(self, partition: int, person: str, before: PersonState) -> list[Write]:
        """An annulled Birth: an annulment of each stage event emitted for the person."""
        if not before.stages or before.number is None or before.birth_date is None or before.known_since is None:
            return []
        emitted = [stage for stage in self.stages if stage.name in before.stages]
        try:
            return [
                self._write(
                    partition,
                    person,
                    self._record(
                        stage,
                        before,
                        self._id(person, stage, before, "annulment"),
                        kind="annulment",
                        corrects=self._id(person, stage, before),
                    ),
                )
                for stage in emitted
            ]
        except DeadLetterKeyError:
            log.warning("life_stages.number_unreadable", partition=partition)
            return []

    def _event(self, partition: int, person: str, state: PersonState, stage: LifeStage) -> Write:
        return self._write(partition, person, self._record(stage, state, self._id(person, stage, state)))

    @staticmethod
    def _id(person: str, stage: LifeStage, state: PersonState, change: str = "new") -> str:
        assert state.birth_date is not None and state.known_since is not None
        return stage_event_id(person, stage.name, state.birth_date, state.known_since, change)

    def _record(self, stage: LifeStage, state: PersonState, event_id: str, kind: str = "new", corrects=None) -> dict:
        assert state.birth_date is not None and state.number is not None
        on = stage.date_for(state.birth_date)
        strict = is_strict(state.protection)
        values = {
            "stageDate": on,
            "birthDate": state.birth_date,
            "ageYears": stage.age_on(state.birth_date, on),
            "legalBasis": stage.law,
            "service": stage.service,
        }
        number = self.seal.open(bytes.fromhex(state.number)) or b""  # DeadLetterKeyError under another key
        return {
            "envelope": {
                "id": event_id,
                "source": SOURCE,
                "type": f"{EVENTS_NAMESPACE}.{stage.name}",
                "specversion": "1.0",
                "time": datetime.fromtimestamp(self.clock(), UTC),
                "subject": None,
                "dataschema": f"/subjects/{EVENTS_NAMESPACE}.{stage.name}/versions/"
                f"{catalog().current(stage.name).version}",
                "person": number.decode(),
                # A strengt fortrolig person's stage names no kommune: not even the event in the bus.
                "kommunenummer": [] if strict or state.kommune is None else [state.kommune],
                "addressProtection": state.protection,
                "changeKind": kind,
                "correctsEventId": corrects,
                "sequenceNumber": None,
                "correlationId": None,
            },
            **{name: values[name] for name in stage.fields},
        }

    def _write(self, partition: int, person: str, record: dict) -> Write:
        event_type = record["envelope"]["type"].rpartition(".")[2]
        value = self.codec.encode(record, self.codec.current_id(event_type))
        headers = tracing.child_kafka_headers(None)
        return (self.events_topic, person.encode(), value, headers, partition)


def _kommune(event_type: str, record: dict) -> str | None:
    """The kommune the person lives in after this event, when it says."""
    if (
        event_type not in ("Birth", "Move", "Immigration", "PopulationRecord")
        or record["envelope"]["changeKind"] == "annulment"
    ):
        return None
    address = record.get("newAddress") if event_type == "Move" else record.get("address")
    if isinstance(address, dict) and address.get("kommunenummer"):
        return str(address["kommunenummer"])
    listed = record["envelope"]["kommunenummer"]
    return listed[-1] if listed else None
