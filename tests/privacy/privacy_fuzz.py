"""A fuzzed run of the whole bus with protected persons, refusing subscribers, a pause and replays.

A seeded random synthetic population (identity numbers with month + 80) lives random lives:
Births, Moves between kommuner, corrections, AddressProtectionChanges to fortrolig,
strengtFortrolig or back to ugradert, Deaths. Their events go through HTTP ingest (a
`samband connectors run http-ingest` subprocess) into a `samband worker` subprocess, which
delivers to real webhook receivers on 127.0.0.1. Phase 1: two receivers refuse (503, 400) so
deliveries are retried and dead-lettered, and one subscription is paused. Phase 2: the
receivers accept, more events arrive (many persons become strengt fortrolig first), then
`samband dlq replay` and `samband subscriptions resume`. At the end `samband privacy scan`
reads the app's topics and both log files, and every request each receiver got is checked
against the rule (docs/security.md): a delivery obeys the stricter of the grade its event was
routed under and the person's grade at the moment it was sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.delivery.ledger import latest_entries
from bus.topics import topic_names
from connectors.webhook.secrets import new_secret
from tests.connectors.http_ingest_client import EXTENSIONS, TOKENS, _json, auth, ingest_config, token_env
from tests.delivery.webhook_receiver import VALIDATION_TYPE, Receiver, Reply
from tests.kafka_io import produce, read_to_end
from tests.operations.samband_cli import samband
from tests.routing.routing_events import address, event, synthetic_number
from tests.support import free_port, unique_name
from tests.worker_process import WorkerProcess, wait_for_commits

KOMMUNER = ("4601", "0301", "5001", "1103")
STRICT = ("strengtFortrolig", "strengtFortroligUtland")
RANK = {"ugradert": 0, "fortrolig": 1, "strengtFortrolig": 2, "strengtFortroligUtland": 2}
SETTLE_TIMEOUT = float(os.environ.get("SAMBAND_FUZZ_SETTLE_TIMEOUT", "120"))
# How long the delivery stage may take to learn a grade the router has routed: a request sent
# later obeys it. Only the oracle's leniency, never a wait.
GRACE = 2.0

# What each kind of subscription asks for. Non-public bodies get no identifier and no confidential field.
EVERYTHING = {
    "Birth": ["envelope.person", "envelope.kommunenummer", "envelope.source", "birthDate", "address"],
    "Move": [
        "envelope.person",
        "envelope.kommunenummer",
        "envelope.source",
        "movedDate",
        "previousAddress",
        "newAddress",
        "scope",
        "cause",
    ],
    "AddressProtectionChange": ["envelope.person", "envelope.kommunenummer", "envelope.source", "protection"],
    "Death": ["envelope.person", "envelope.kommunenummer", "envelope.source", "deathDate"],
}
ADDRESSES = {t: [f for f in fields if f not in ("envelope.person", "protection")] for t, fields in EVERYTHING.items()}
NO_ADDRESS = {"Move": ["movedDate", "scope", "envelope.source"], "Death": ["deathDate"]}


@dataclass(frozen=True)
class Sub:
    id: str
    public_body: bool
    kommuner: object  # "all" or a list
    fields: dict
    refuse: int | None = None  # the HTTP status it answers in phase 1
    paused: bool = False  # paused in phase 1, resumed in phase 2


SUBSCRIPTIONS = (
    Sub("fuzz-nav", True, "all", EVERYTHING),
    Sub("fuzz-helse", True, ["4601", "0301"], EVERYTHING, refuse=503),
    Sub("fuzz-bank", False, "all", ADDRESSES, paused=True),
    Sub("fuzz-butikk", False, ["4601"], ADDRESSES, refuse=400),
    Sub("fuzz-kirke", False, ["0301", "5001"], NO_ADDRESS),
)


@dataclass
class Sent:
    """One event as the source gave it."""

    id: str
    person: int
    position: int  # in the person's own sequence
    phase: int
    grade: str  # the person's grade once this event happened
    body: dict  # the CloudEvent posted


@dataclass
class Person:
    number: str
    events: list[Sent] = field(default_factory=list)
    streets: list[str] = field(default_factory=list)  # every street name the person ever had


@dataclass
class Outcome:
    seed: int
    persons: int
    events: int
    scan_code: int
    scan_output: str
    findings: list[str]  # the receivers' check
    requests: int  # to the receivers, handshakes included


def population(rng: random.Random, size: int) -> list[Person]:
    """`size` synthetic persons with random lives in two phases; deterministic for the rng's seed."""
    persons: list[Person] = []
    numbers: set[str] = set()
    while len(persons) < size:
        number = synthetic_number(rng.randint(1, 28), rng.randint(1, 12), rng.randrange(100), rng.randrange(900))
        if number not in numbers:
            numbers.add(number)
            persons.append(_life(rng, len(persons), Person(number)))
    return persons


def _life(rng: random.Random, index: int, person: Person) -> Person:
    grade = "ugradert"
    kommune, street = rng.choice(KOMMUNER), None
    last_move: dict | None = None

    def new_street() -> str:
        person.streets.append(f"Fuzzveg{index:04d}x{len(person.streets):02d}")
        return person.streets[-1]

    def add(record: dict, phase: int, stated: str) -> None:
        envelope = record["envelope"]
        envelope.update(id=str(uuid.UUID(int=rng.getrandbits(128), version=4)), addressProtection=stated)
        person.events.append(
            Sent(envelope["id"], index, len(person.events), phase, grade, _cloudevent(record, kommune))
        )

    if rng.random() < 0.5:
        street = new_street()
        add(event("Birth", person.number, [kommune], address=address(kommune, street, 1)), 1, grade)
    lag = False  # the source has not heard of the newest, stricter grade yet
    for phase, steps in ((1, rng.randint(2, 6)), (2, rng.randint(1, 4))):
        for step in range(steps):
            stated = "ugradert" if lag else grade
            lag = False
            roll = rng.random()
            strengt_first = phase == 2 and step == 0 and roll < 0.5  # many become strengt fortrolig before the replays
            if strengt_first or 0.45 <= roll < 0.7:
                grade = "strengtFortrolig" if strengt_first else rng.choice(list(RANK))
                lag = RANK[grade] > 0 and rng.random() < 0.3
                add(event("AddressProtectionChange", person.number, [kommune], protection=grade), phase, grade)
            elif roll < 0.45 or last_move is None:
                old, old_street = kommune, street
                kommune, street = rng.choice(KOMMUNER), new_street()
                last_move = _move(person.number, old, old_street, kommune, street)
                add(last_move, phase, stated)
            else:  # a correction of the last move: another street in the same kommune
                street = new_street()
                corrected = last_move["envelope"]["id"]
                old = last_move["previousAddress"]
                record = _move(person.number, old and old["kommunenummer"], old and old["streetName"], kommune, street)
                record["envelope"].update(changeKind="correction", correctsEventId=corrected)
                add(record, phase, stated)
        if phase == 2 and rng.random() < 0.3:
            add(event("Death", person.number, [kommune]), phase, "ugradert" if lag else grade)
    return person


def _move(number: str, old: str | None, old_street: str | None, new: str, street: str) -> dict:
    previous = address(old, old_street, 2) if old and old_street else None
    return event(
        "Move",
        number,
        sorted({old or new, new}),
        previousAddress=previous,
        newAddress=address(new, street, 7),
        scope="withinKommune" if old == new else "betweenKommuner",
        cause="relocation",
    )


def _cloudevent(record: dict, kommune: str) -> dict:
    """The record as a structured CloudEvent for HTTP ingest, sent by the person's kommune."""
    envelope = record["envelope"]
    body = {
        "specversion": "1.0",
        "id": envelope["id"],
        "source": f"urn:no:kommune:{kommune}:folkeregister",
        "type": envelope["type"],
        "time": envelope["time"].isoformat(),
        "subject": envelope["subject"],
        "datacontenttype": "application/json",
        "data": {k: _json(v) for k, v in record.items() if k != "envelope"},
    }
    return body | {ext: envelope[name] for name, ext in EXTENSIONS.items() if envelope[name] is not None}


def interleave(rng: random.Random, persons: list[Person], phase: int) -> list[Sent]:
    """The phase's events of all persons in a random order that keeps each person's order."""
    queues = [[e for e in p.events if e.phase == phase] for p in persons]
    queues = [q for q in queues if q]
    order: list[Sent] = []
    while queues:
        queue = rng.choice(queues)
        order.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    return order


def secret_env(sub_id: str) -> str:
    """The secret's variable, named by the subscription's own id."""
    return "SAMBAND_WEBHOOK_SECRET_" + sub_id.upper().replace("-", "_")


def subscription(sub: Sub, url: str) -> dict:
    return {
        "id": sub.id,
        "system": {"name": f"System {sub.id}", "owner": "Prøve kommune", "contact": "it@prove.example"},
        "legal_basis": "Testhjemmel § 1 (synthetic test subscription)",
        "public_body": sub.public_body,
        "kommuner": sub.kommuner,
        "event_types": sorted(sub.fields),
        "predicates": {},
        "fields": sub.fields,
        "delivery": {
            "kind": "webhook",
            "url": url,
            "secret_ref": f"env:{secret_env(sub.id)}",
            "retry_schedule": [1, 1],
            "read_timeout": 2,
            "connect_timeout": 1,
        },
    }


class Gate:
    """A receiver behaviour: answers `status` to events (never to the handshake) until opened."""

    def __init__(self, status: int | None):
        self.status = status

    def __call__(self, _number: int, event) -> Reply:
        if self.status is None or event["type"] == VALIDATION_TYPE:
            return Reply()
        return Reply(self.status)


class Run:
    def __init__(self, bootstrap: str, tmp: Path, seed: int, size: int):
        self.bootstrap, self.tmp, self.seed = bootstrap, tmp, seed
        self.rng = random.Random(seed)
        self.persons = population(self.rng, size)
        self.app_id = unique_name("fuzz")
        self.prefix = f"subscriber.{self.app_id}."
        self.secrets = {s.id: new_secret() for s in SUBSCRIPTIONS}
        self.gates = {s.id: Gate(s.refuse) for s in SUBSCRIPTIONS}
        self.receivers = {s.id: Receiver(self.secrets[s.id], self.gates[s.id]) for s in SUBSCRIPTIONS}
        self.port = free_port()
        self.env = {
            **os.environ,
            "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SAMBAND_APP_ID": self.app_id,
            "SAMBAND_SUBSCRIBER_TOPIC_PREFIX": self.prefix,
            "SAMBAND_DATA_DIR": str(tmp / "worker-data"),
            "SAMBAND_WEB_PORT": str(free_port()),
            "SAMBAND_LOG_FORMAT": "json",
            # The refusing subscriber trips its circuit breaker; its probes (which must obey protection
            # too) go out every 0.2 s, not every 30 s, so that its held deliveries are decided in time.
            "SAMBAND_BREAKER_PROBE_SECONDS": "0.2",
            **{secret_env(sub): secret for sub, secret in self.secrets.items()},
            **{token_env(name): token for name, token in TOKENS.items()},
        }
        self.worker = WorkerProcess(self.env, tmp / "worker.log")
        self.connector_log = tmp / "connector.log"
        self.connector: subprocess.Popen | None = None
        self.settled: list[tuple[float, int]] = []  # (time, phase): every event of the phase had been routed by then
        self.posted: list[tuple[float, int]] = []  # (time, phase): the phase's events began to be posted
        self.sent = 0
        self.stopped = False

    # -- set-up and tear-down ------------------------------------------------------------------

    async def start(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(f"{self.app_id}-{n}", 4, 1) for n in ("ingest", "events", "deadletter", "deliveries")]
                + [NewTopic(f"{self.app_id}-subscriptions", 1, 1, topic_configs={"cleanup.policy": "compact"})]
            )
        finally:
            await admin.close()
        for receiver in self.receivers.values():
            await receiver.start()
        await produce(
            self.bootstrap,
            f"{self.app_id}-subscriptions",
            [json.dumps(subscription(s, self.receivers[s.id].url)).encode() for s in SUBSCRIPTIONS],
            [s.id.encode() for s in SUBSCRIPTIONS],
        )
        self.worker.start()
        config = self.tmp / "http-ingest.json"
        config.write_text(json.dumps(ingest_config(self.port)))
        with self.connector_log.open("ab") as log:
            self.connector = subprocess.Popen(
                [sys.executable, "-m", "agents.cli", "connectors", "run", "http-ingest", "--config", str(config)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        await self._until(self._ingest_answers, "HTTP ingest answers")
        for sub in SUBSCRIPTIONS:
            await self._until(self.receivers[sub.id].verified, f"{sub.id} verified")

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.connector is not None and self.connector.poll() is None:
            self.connector.terminate()
            self.connector.wait(30)
        if self.worker.process is not None:
            self.worker.stop()
        for receiver in self.receivers.values():
            await receiver.stop()

    async def delete_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(
                [t for t in await admin.list_topics() if t.startswith((self.app_id, self.prefix))]
            )
        finally:
            await admin.close()

    async def _ingest_answers(self) -> bool:
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{self.port}/openapi.json") as response:
                    return response.status == 200
        except aiohttp.ClientError:
            return False

    async def _until(self, condition, what: str, timeout: float = SETTLE_TIMEOUT) -> None:
        """Poll `condition` (sync or async) until true; fail early, with the logs, if a process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process, log in (
                ("worker", self.worker.process, self.worker.log_path),
                ("http-ingest", self.connector, self.connector_log),
            ):
                if process is not None and process.poll() is not None:
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                    raise AssertionError(f"{name} exited ({process.returncode}) while waiting for {what}:\n{tail}")
            result = condition()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.3)  # poll interval, not a wait for an outcome
        raise AssertionError(f"not {what} within {timeout:.0f} s (seed {self.seed})")

    # -- the run ------------------------------------------------------------------------------

    async def post(self, events: list[Sent]) -> None:
        """Through HTTP ingest in random batches, one request after the other's 202."""
        self.posted.append((time.time(), max(e.phase for e in events)))
        async with aiohttp.ClientSession() as session:
            at = 0
            while at < len(events):
                batch = events[at : at + self.rng.randint(1, 8)]
                at += len(batch)
                async with session.post(
                    f"http://127.0.0.1:{self.port}/events",
                    data=json.dumps([e.body for e in batch]),
                    headers={**auth("every-type"), "Content-Type": "application/cloudevents-batch+json"},
                ) as r:
                    assert r.status == 202, f"HTTP ingest answered {r.status}: {await r.text()}"
        self.sent += len(events)

    async def routed(self, phase: int) -> None:
        """Every event sent so far was ingested and routed; the phase is settled from now on."""
        for stage in ("ingest", "router"):
            await wait_for_commits(self.bootstrap, f"{self.app_id}-{stage}", self.sent, SETTLE_TIMEOUT, self.worker)
        self.settled.append((time.time(), phase))

    async def delivered(
        self, skip: frozenset[str] = frozenset(), replayed_after: dict[bytes, str] | None = None
    ) -> None:
        """Every delivery record has its outcome in the ledger (those replayed: a newer one), but `skip`'s."""
        topics = topic_names(self.app_id)

        async def done() -> bool:
            ledger = await latest_entries(self.bootstrap, topics.ledger)
            for record in await read_to_end(self.bootstrap, topics.deliveries):
                delivery = json.loads(record.value)
                if delivery["subscription"] in skip:
                    continue
                key = f"{delivery['event']['id']}/{delivery['subscription']}".encode()
                entry = ledger.get(key)
                if entry is None or (replayed_after and key in replayed_after and entry["at"] <= replayed_after[key]):
                    return False
            return True

        await self._until(done, "every delivery decided")

    async def replayed_keys(self) -> set[bytes]:
        """Ledger keys of the delivery records `dlq replay` wrote."""
        keys = set()
        for record in await read_to_end(self.bootstrap, topic_names(self.app_id).deliveries):
            if any(name == "samband-replay-of" for name, _ in record.headers or ()):
                delivery = json.loads(record.value)
                keys.add(f"{delivery['event']['id']}/{delivery['subscription']}".encode())
        return keys

    async def dead_lettered(self, sub_id: str) -> dict[bytes, str]:
        """Ledger key -> time of the entry, for the subscription's deliveries now dead-lettered."""
        ledger = await latest_entries(self.bootstrap, topic_names(self.app_id).ledger)
        return {k: e["at"] for k, e in ledger.items() if e["subscription"] == sub_id and e["status"] == "dead_lettered"}

    async def cli(self, *args: str):
        result = await samband(
            self.bootstrap,
            *args,
            env={"SAMBAND_APP_ID": self.app_id, "SAMBAND_SUBSCRIBER_TOPIC_PREFIX": self.prefix},
            timeout=120,
        )
        assert "Traceback" not in result.stderr, result.stderr
        return result

    async def play(self) -> Outcome:
        paused = frozenset(s.id for s in SUBSCRIPTIONS if s.paused)
        for sub_id in paused:
            result = await self.cli("subscriptions", "pause", sub_id)
            assert result.code == 0, result.stderr
        await self.post(interleave(self.rng, self.persons, 1))
        await self.routed(1)
        await self.delivered(skip=paused)

        for gate in self.gates.values():
            gate.status = None
        await self.post(interleave(self.rng, self.persons, 2))
        await self.routed(2)
        dead: dict[bytes, str] = {}
        for sub in SUBSCRIPTIONS:
            if sub.refuse:
                dead |= await self.dead_lettered(sub.id)
                result = await self.cli("dlq", "replay", "--subscription", sub.id)
                assert result.code == 0, result.stderr
        # Those the person's grade still allowed went back to the deliveries topic; the others were withheld.
        written = await self.replayed_keys()
        replayed = {key: at for key, at in dead.items() if key in written}
        for sub_id in paused:
            result = await self.cli("subscriptions", "resume", sub_id)
            assert result.code == 0, result.stderr
        await self.delivered(replayed_after=replayed)
        await self.stop()

        scan = await self.cli("privacy", "scan", "--logs", str(self.worker.log_path), str(self.connector_log))
        findings = [f for sub in SUBSCRIPTIONS for f in self.check(sub)]
        return Outcome(
            self.seed,
            len(self.persons),
            sum(len(p.events) for p in self.persons),
            scan.code,
            scan.stdout + scan.stderr,
            findings,
            sum(len(r.received) for r in self.receivers.values()),
        )

    # -- the receivers' check -----------------------------------------------------------------

    def check(self, sub: Sub) -> list[str]:
        """Every request the subscription's receiver got (answered 2xx or not) against the grade rule."""
        by_id = {e.id: e for p in self.persons for e in p.events}
        findings = []
        for request in self.receivers[sub.id].received:
            cloudevent = request.event
            if cloudevent["type"] == VALIDATION_TYPE:
                continue
            event_id, purge = cloudevent["id"], cloudevent["id"].endswith("-purge")
            sent = by_id.get(event_id.removesuffix("-purge"))
            if sent is None:
                findings.append(f"{sub.id}: event {event_id}: not an event of this run")
                continue
            grade = self.grade_when_sent(sent, request.at)
            where = (
                f"{sub.id}: {cloudevent['type'].rpartition('.')[2]} {event_id} (person {sent.person} event "
                f"{sent.position}, phase {sent.phase}, answered {request.status}, grade {grade})"
            )
            text = json.dumps(
                {**cloudevent.get_attributes(), "data": cloudevent.get_data()}, default=str, ensure_ascii=False
            )
            person = self.persons[sent.person]
            streets = [s for s in person.streets if s in text]
            scoped = sub.kommuner != "all"
            if grade in STRICT:
                if scoped and not purge:
                    findings.append(
                        f"{where}: a strengt fortrolig person's event reached a kommune-scoped subscription"
                    )
                if streets or _has_address(cloudevent.get_data()):
                    findings.append(f"{where}: a strengt fortrolig person's address")
                if any(f'"{k}"' in text for k in KOMMUNER):
                    findings.append(f"{where}: a strengt fortrolig person's kommunenummer")
                if "urn:no:kommune:" in text:
                    findings.append(f"{where}: a strengt fortrolig person's source names a kommune")
                if _locality(cloudevent.get_data()):
                    findings.append(f"{where}: a strengt fortrolig person's move scope or cause")
            elif grade == "fortrolig" and not sub.public_body:
                if scoped and not purge:
                    findings.append(
                        f"{where}: a fortrolig person's event reached a non-public kommune-scoped subscription"
                    )
                if streets or _has_address(cloudevent.get_data()):
                    findings.append(f"{where}: a fortrolig person's address reached a non-public body")
        return findings

    def grade_when_sent(self, sent: Sent, at: float) -> str:
        """The grade a request at `at` must obey: the stricter of the grade its event was routed under
        and the person's grade at the moment it was sent (docs/security.md).

        The grade at that moment is the one after the person's last event the bus had surely routed
        (GRACE for the delivery stage to learn it), or after any later event already posted: the bus
        may have routed those too, so the least strict of them is the one the request is judged by.
        """
        settled = max((p for t, p in self.settled if t + GRACE <= at), default=0)
        posted = max((p for t, p in self.posted if t <= at), default=1)
        events = self.persons[sent.person].events
        routed = [e for e in events if e.position <= sent.position or e.phase <= settled]  # a prefix
        possible = [routed[-1], *(e for e in events[len(routed) :] if e.phase <= posted)]
        now = min((e.grade for e in possible), key=RANK.__getitem__)
        return max(sent.grade, now, key=RANK.__getitem__)


def _has_address(data) -> bool:
    if isinstance(data, dict):
        return bool(data.get("streetName")) or bool(data.get("kommunenummer")) or any(map(_has_address, data.values()))
    if isinstance(data, list):
        return any(map(_has_address, data))
    return False


def _locality(data) -> bool:
    return isinstance(data, dict) and bool(data.get("scope") or data.get("cause"))


async def fuzz_run(bootstrap: str, tmp: Path, seed: int, size: int) -> Outcome:
    run = Run(bootstrap, tmp, seed, size)
    print(f"privacy fuzz: seed {seed}, {size} persons, app id {run.app_id}", flush=True)
    try:
        await run.start()
        return await run.play()
    finally:
        await run.stop()
        if not os.environ.get("SAMBAND_FUZZ_KEEP_TOPICS"):  # kept to look into a finding
            await run.delete_topics()
