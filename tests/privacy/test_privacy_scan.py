"""`samband privacy scan` over real topics of a unique app id and real log files: each kind of leak
planted is found (topic, partition, offset or file and line) and exits 1, without printing the
data; a clean bus gives 0 findings and exit 0. All people and addresses are synthetic."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from agents.delivery.egress import subscriber_subject
from connectors.kafka_sink.avro_record import to_avro
from connectors.kafka_sink.sink import register_schemas
from schemas.catalog import catalog
from schemas.codec import Codec
from schemas.registry import CatalogRegistry
from tests.kafka_io import create_topics
from tests.operations.samband_cli import samband
from tests.routing.routing_events import address, encode, event, synthetic_number

OPEN = synthetic_number(3, 4, 5, 100)  # an ugradert person
HIDDEN = synthetic_number(7, 8, 9, 200)  # becomes strengt fortrolig
OPEN_KEY, HIDDEN_KEY = "a" * 32, "b" * 32  # their pseudonyms (the events topic's keys)
OLD_STREET, SECRET_STREET, OPEN_STREET = "Gamleveien", "Skjærgata", "Åpenvegen"
PUBLIC, PRIVATE = "kommunal-tjeneste", "privat-operator"  # a public body for all kommuner; a private one in 4601


def _subscription(sub_id: str, public_body: bool, kommuner, delivery: dict) -> bytes:
    return json.dumps(
        {
            "id": sub_id,
            "system": {"name": sub_id, "owner": "Prøve", "contact": "test@example.invalid"},
            "legal_basis": "Syntetisk prøve",
            "public_body": public_body,
            "kommuner": kommuner,
            "event_types": ["Move"],
            "fields": {"Move": ["envelope.person", "movedDate", "newAddress"]}
            if public_body
            else {"Move": ["movedDate", "newAddress"]},
            "delivery": delivery,
        }
    ).encode()


def _delivery(sub_id: str, person_key: str, record: dict, data: dict, kind: str = "event") -> bytes:
    envelope = record["envelope"]
    event_id = envelope["id"] + ("-purge" if kind == "purge" else "")
    cloudevent = {
        "specversion": "1.0",
        "id": event_id,
        "type": "no.samband.purge" if kind == "purge" else envelope["type"],
        "source": "urn:no:samband:router" if kind == "purge" else envelope["source"],
        "time": "2024-03-01T08:30:00+00:00",
        "subject": person_key,
        "datacontenttype": "application/json",
        "data": data,
    }
    return json.dumps(
        {
            "idempotency_key": f"{event_id}.{sub_id}",
            "subscription": sub_id,
            "person": person_key,
            "event": cloudevent,
            "kind": kind,
        }
    ).encode()


def _move(person: str, street: str, protection: str = "ugradert") -> dict:
    return event(
        "Move",
        person,
        ["4601"],
        envelope={"addressProtection": protection, "source": "urn:no:skatteetaten:folkeregisteret"},
        newAddress=address("4601", street, 3),
    )


def _moved(record: dict, person: str | None = None) -> dict:
    """What the router delivers of a Move: the granted fields (newAddress as JSON, dates as text)."""
    data = {"movedDate": record["movedDate"].isoformat(), "newAddress": record["newAddress"]}
    return {**data, "envelope": {"person": person}} if person else data


class Bus:
    """Real topics of a unique app id, the way a worker leaves them."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self.app_id = f"scan-{uuid.uuid4().hex[:10]}"
        self.prefix = f"{self.app_id}.subscriber."  # SAMBAND_SUBSCRIBER_TOPIC_PREFIX, unique to the test
        self.subscriber_topic = self.prefix + PRIVATE

    def topic(self, name: str) -> str:
        return f"{self.app_id}-{name}"

    async def create(self) -> None:
        await create_topics(
            self.bootstrap,
            *(
                self.topic(t)
                for t in (
                    "events",
                    "deliveries",
                    "delivery-pending",
                    "delivery-ledger",
                    "delivery-status",
                    "deadletter",
                )
            ),
            self.subscriber_topic,
        )
        await create_topics(self.bootstrap, self.topic("subscriptions"), partitions=1)

    async def delete(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([t for t in await admin.list_topics() if t.startswith(self.app_id)])
        finally:
            await admin.close()

    async def put(self, topic: str, key: bytes | None, value: bytes | None, headers=None) -> tuple[int, int]:
        """Write one record (acks=all) and say where it landed: (partition, offset)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            meta = await producer.send_and_wait(topic, value=value, key=key, headers=headers)
        finally:
            await producer.stop()
        return meta.partition, meta.offset

    async def subscriber_record(self, record: dict, data: dict, key: str = HIDDEN_KEY) -> tuple[int, int]:
        """A record on the private operator's own topic, as the Kafka sink writes it (Avro data, ce_* headers)."""
        schema_id, schema = register_schemas(
            registry := CatalogRegistry(catalog()), self.subscriber_topic, {"Move": ["movedDate", "newAddress"]}
        )["Move"]
        value = Codec(registry).encode(to_avro(schema, data), schema_id)
        envelope = record["envelope"]
        headers = [
            ("ce_id", envelope["id"].encode()),
            ("ce_type", envelope["type"].encode()),
            ("ce_source", envelope["source"].encode()),
            ("ce_subject", key.encode()),
        ]
        return await self.put(self.subscriber_topic, key.encode(), value, headers)

    async def scan(self, *logs) -> tuple[int, str, str]:
        result = await samband(
            self.bootstrap,
            "privacy",
            "scan",
            *(("--logs", *map(str, logs)) if logs else ()),
            env={"SAMBAND_APP_ID": self.app_id, "SAMBAND_SUBSCRIBER_TOPIC_PREFIX": self.prefix},
            timeout=120,
        )
        assert "Traceback" not in result.stderr, result.stderr
        return result.code, result.stdout, result.stderr


@pytest.fixture
async def bus(kafka_bootstrap):
    """A clean bus: an ugradert person who moved, a person who moved, then became strengt fortrolig
    (the purge went out), then moved again; deliveries as the rules allow; records without personal data."""
    bus = Bus(kafka_bootstrap)
    await bus.create()
    try:
        await bus.put(
            bus.topic("subscriptions"),
            PUBLIC.encode(),
            _subscription(
                PUBLIC,
                True,
                "all",
                {"kind": "webhook", "url": "https://kommune.example/hook", "secret_ref": f"file:{PUBLIC}"},
            ),
        )
        await bus.put(
            bus.topic("subscriptions"), PRIVATE.encode(), _subscription(PRIVATE, False, ["4601"], {"kind": "kafka"})
        )
        bus.open_move = _move(OPEN, OPEN_STREET)
        bus.old_move = _move(HIDDEN, OLD_STREET)
        bus.protection = event("AddressProtectionChange", HIDDEN, ["4601"], protection="strengtFortrolig")
        bus.secret_move = _move(HIDDEN, SECRET_STREET, "strengtFortrolig")
        for key, record in (
            (OPEN_KEY, bus.open_move),
            (HIDDEN_KEY, bus.old_move),
            (HIDDEN_KEY, bus.protection),
            (HIDDEN_KEY, bus.secret_move),
        ):
            await bus.put(bus.topic("events"), key.encode(), encode(record))
        deliveries = bus.topic("deliveries")
        # Granted envelope.person and the address of an ugradert person: allowed.
        await bus.put(deliveries, b"k1", _delivery(PUBLIC, OPEN_KEY, bus.open_move, _moved(bus.open_move, OPEN)))
        # The old address, delivered while the person was ugradert, then the purge: allowed.
        await bus.put(deliveries, b"k2", _delivery(PUBLIC, HIDDEN_KEY, bus.old_move, _moved(bus.old_move, HIDDEN)))
        await bus.put(deliveries, b"k2", _delivery(PUBLIC, HIDDEN_KEY, bus.protection, {"delete": "address"}, "purge"))
        # After the change: the Move without its address.
        await bus.put(
            deliveries,
            b"k2",
            _delivery(
                PUBLIC,
                HIDDEN_KEY,
                bus.secret_move,
                {"movedDate": "2024-03-01", "newAddress": None, "envelope": {"person": HIDDEN}},
            ),
        )
        await bus.put(
            bus.topic("delivery-ledger"),
            b"e1.x",
            json.dumps(
                {
                    "event_id": bus.open_move["envelope"]["id"],
                    "subscription": PUBLIC,
                    "status": "delivered",
                    "attempts": 1,
                }
            ).encode(),
        )
        await bus.put(bus.topic("delivery-status"), PUBLIC.encode(), json.dumps({"state": "verified"}).encode())
        # A dead letter whose payload is ciphertext (unreadable): not a finding; its headers are.
        await bus.put(
            bus.topic("deadletter"),
            OPEN_KEY.encode(),
            os.urandom(200),
            [
                ("samband-dlq-reason", b"delivery.rejected"),
                ("traceparent", b"00-" + b"0" * 32 + b"-" + b"1" * 16 + b"-01"),
            ],
        )
        yield bus
    finally:
        await bus.delete()


def _clean_log(tmp_path):
    log = tmp_path / "worker.log"
    log.write_text(
        "\n".join(
            json.dumps(line)
            for line in (
                {"event": "routed", "person": "[redacted]", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
                {"event": "delivered", "subscription": PUBLIC, "offset": 12345678901234},
            )
        )
        + "\n"
    )
    return log


async def test_a_clean_bus_and_clean_logs_give_no_finding_and_exit_0(bus, tmp_path):
    code, out, _ = await bus.scan(_clean_log(tmp_path))
    assert code == 0, out
    assert out.strip().endswith("0 finding(s) in 7 topic(s) of " + bus.app_id + " and 1 log file(s)"), out


async def test_each_planted_leak_is_found_where_it_is_and_nothing_personal_is_printed(bus, tmp_path):
    ledger = await bus.put(
        bus.topic("delivery-ledger"), b"leak", json.dumps({"status": "failed", "note": f"person {HIDDEN}"}).encode()
    )
    status = await bus.put(bus.topic("delivery-status"), b"leak", json.dumps({"error": f"id={OPEN}"}).encode())
    # A strengt fortrolig person's new street, to a public body and on the private operator's topic.
    to_public = await bus.put(
        bus.topic("deliveries"), b"k2", _delivery(PUBLIC, HIDDEN_KEY, bus.secret_move, _moved(bus.secret_move, HIDDEN))
    )
    to_private = await bus.subscriber_record(bus.secret_move, _moved(bus.secret_move))
    # A replay of the old Move after the purge, address included.
    replay = await bus.put(
        bus.topic("deliveries"), b"k2", _delivery(PUBLIC, HIDDEN_KEY, bus.old_move, _moved(bus.old_move, HIDDEN))
    )
    # A Move whose event has left the events topic (retention), keyed as the sink keys it: the
    # subscription's own pseudonym of the strengt fortrolig person.
    aged_out = _move(HIDDEN, SECRET_STREET, "strengtFortrolig")
    subject = subscriber_subject(os.environ["SAMBAND_PSEUDONYM_KEY"].encode(), PRIVATE, HIDDEN_KEY)
    to_private_aged = await bus.subscriber_record(aged_out, _moved(aged_out), key=subject)
    # A readable dead letter: the event itself.
    dead = await bus.put(bus.topic("deadletter"), HIDDEN_KEY.encode(), encode(bus.secret_move))
    log = _clean_log(tmp_path)
    with log.open("a") as out:
        out.write(json.dumps({"event": "oops", "error": f"bad {OPEN}"}) + "\n")
        out.write(
            json.dumps({"event": "oops", "error": f"moved to {SECRET_STREET} 3"}) + "\n"
        )  # as the JSON log writes it: Skj\\u00e6rgata

    code, out, err = await bus.scan(log)

    assert code == 1, out
    lines = out.splitlines()
    at = {
        name: f"{topic} partition {where[0]} offset {where[1]}"
        for name, topic, where in (
            ("ledger", bus.topic("delivery-ledger"), ledger),
            ("status", bus.topic("delivery-status"), status),
            ("public", bus.topic("deliveries"), to_public),
            ("private", bus.subscriber_topic, to_private),
            ("aged", bus.subscriber_topic, to_private_aged),
            ("replay", bus.topic("deliveries"), replay),
            ("dead", bus.topic("deadletter"), dead),
        )
    }
    expected = [
        f"{at['ledger']}: identity_number",
        f"{at['status']}: identity_number",
        f"{at['public']}: protected_address (field newAddress, subscription {PUBLIC})",
        f"{at['replay']}: protected_address (field newAddress, subscription {PUBLIC})",
        f"{at['private']}: protected_address (field newAddress, subscription {PRIVATE})",
        f"{at['private']}: protected_kommune (field subscription.kommuner, subscription {PRIVATE})",
        f"{at['aged']}: protected_address (field newAddress, subscription {PRIVATE})",
        f"{at['aged']}: protected_kommune (field subscription.kommuner, subscription {PRIVATE})",
        f"{at['dead']}: identity_number",
        f"{at['dead']}: protected_address",
        f"{log} line 3: identity_number",
        f"{log} line 4: protected_address",
    ]
    for line in expected:
        assert line in lines, f"{line!r} not in:\n{out}"
    assert len(lines) == len(expected) + 1, out  # and the summary line
    for secret in (OPEN, HIDDEN, SECRET_STREET, OLD_STREET, OPEN_STREET):
        assert secret not in out + err
