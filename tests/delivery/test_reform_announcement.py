"""A reform's kommune renumbering as a catalog event (docs/reform-day.md): `samband subscriptions
announce-reform` sends one KommuneRenumbering to each subscription to it that is national or scoped
to a kommune of the reform, through the delivery stage of a real worker: a webhook subscriber
verifies its signature, a Kafka subscriber reads it with confluent-kafka's AvroDeserializer.
Without Kafka: who gets it, its stable id, and that no person's delivery can pass as one."""

from __future__ import annotations

import asyncio
import json
from datetime import date

from delivery_bus import running_bus
from subscription_factory import subscription
from test_delivery_kafka import _consume  # a topic's records as a Kafka-native subscriber reads them
from test_reform_day import _cli  # `samband subscriptions ...` in a subprocess
from webhook_receiver import Receiver

from agents.delivery.egress import Egress, Grades, subscriber_subject
from agents.routing.reference import REFERENCE_PERSON, renumbering_announcement
from agents.subscriptions.audit import AuditLog
from agents.subscriptions.model import Subscription
from bus.reading import read_topic
from bus.topics import topic_names
from schemas.kommuner import renumbering_record

REFORM = date(2024, 1, 1)
TYPE = "no.samband.reference.KommuneRenumbering"
GRANT = {"KommuneRenumbering": ["validFrom", "changes"]}
FAST = {"retry_schedule": [0.1, 0.2, 0.3], "read_timeout": 1.0, "connect_timeout": 0.5}


def _sub(sub_id: str, kommuner, event_types=("KommuneRenumbering",), fields=None) -> Subscription:
    return subscription(sub_id, kommuner, list(event_types), fields or GRANT)


def test_it_goes_to_national_subscriptions_and_those_scoped_to_a_kommune_the_reform_touched():
    subs = [
        _sub("tromso-today", ["5501"]),  # renumbered from 5401 that day: today's code
        _sub("tromso-then", ["5401"]),  # made in 2023, not yet renumbered
        _sub("haram", ["1580"]),  # a part of Ålesund 1507, split that day
        _sub("oslo", ["0301"]),  # untouched by the 2024 reform
        _sub("nasjonal", "all"),
        _sub("tromso-1902", ["1902"]),  # made in 2019, before Tromsø's 1902 became 5401 (2020), then 5501
        _sub("ski", ["0213"]),  # made in 2019: Ski, in 3020 Nordre Follo from 2020, 3207 from 2024
        _sub("tromso-moves", ["5501"], ["Move"], {"Move": ["movedDate"]}),  # not subscribed to the type
        subscription(
            "nasjonal-rettelser", "all", ["KommuneRenumbering"], GRANT, predicates={"change_kind": ["correction"]}
        ),
    ]
    planned = renumbering_announcement(renumbering_record(REFORM), subs)
    assert planned.recipients == ["haram", "nasjonal", "ski", "tromso-1902", "tromso-then", "tromso-today"]
    assert planned.only("haram").recipients == ["haram"] and len(planned.only("haram").deliveries) == 1
    assert planned.only("oslo").recipients == []
    again = renumbering_announcement(renumbering_record(REFORM), subs)
    assert again.event_id == planned.event_id, "announcing again gives the same id, so the same idempotency keys"
    assert [d.value for d in again.deliveries] == [d.value for d in planned.deliveries]
    earlier = renumbering_announcement(renumbering_record(date(2020, 1, 1)), subs)
    assert earlier.event_id != planned.event_id
    # Tromsø's 1902 became 5401 in 2020, the same kommune as 5501 today; Haram's 1580 is from 2024.
    assert earlier.recipients == ["nasjonal", "ski", "tromso-1902", "tromso-then", "tromso-today"]
    corrected = renumbering_record(REFORM)
    corrected["changes"][0] = {**corrected["changes"][0], "newNames": ["Ålesund", "Haram kommune"]}
    assert renumbering_announcement(corrected, subs).event_id != planned.event_id, "corrected data: a new event"
    assert all(d.key.endswith(f"/{REFERENCE_PERSON}".encode()) for d in planned.deliveries)


def test_a_subscription_gets_only_the_fields_of_it_it_was_granted():
    planned = renumbering_announcement(
        renumbering_record(REFORM), [_sub("dato", "all", fields={"KommuneRenumbering": ["validFrom"]})]
    )
    egress = Egress(Grades(), b"k" * 32)
    [delivery] = planned.deliveries
    sent = egress.outgoing(delivery.value.decode(), "dato", public_body=False, national=True)
    assert sent is not None and sent["event"]["data"] == {"validFrom": "2024-01-01"}
    assert sent["event"]["subject"] == "kommuner/2024-01-01"  # its own: it is about no person


def test_a_persons_delivery_with_a_reference_type_still_gets_the_persons_grade_and_pseudonym():
    """Only the bus's announcement is a reference event: a delivery record of a person (its `person` a
    pseudonym) whose type claims the reference namespace still passes the protection rule."""
    person = "ab" * 16
    grades = Grades()
    grades.set(person, "strengtFortrolig")
    egress = Egress(grades, b"k" * 32)
    record = json.dumps(
        {
            "idempotency_key": "e1.kommune-sub",
            "subscription": "kommune-sub",
            "person": person,
            "kind": "event",
            "event": {"type": TYPE, "id": "e1", "source": "urn:x", "subject": "kommuner/2024-01-01", "data": {}},
        }
    )
    assert egress.outgoing(record, "kommune-sub", public_body=True, national=False) is None
    national = egress.outgoing(record, "nasjonal", public_body=True, national=True)
    assert national is not None
    assert national["event"]["subject"] == subscriber_subject(b"k" * 32, "nasjonal", person)


def test_a_day_without_a_reform_is_refused_naming_the_reform_days(worker_env):
    done = _cli(worker_env, "announce-reform", "2023-01-01")
    assert done.returncode == 2
    assert "no reform on 2023-01-01 in the kommune data; reform days: 2020-01-01, 2024-01-01" in done.stderr


async def test_announce_reform_sends_the_renumbering_signed_to_webhooks_and_as_avro_to_kafka(kafka_bootstrap, tmp_path):
    async with running_bus(kafka_bootstrap, tmp_path) as bus:
        receiver = Receiver(bus.secret)
        await receiver.start()
        try:
            hook = {"kind": "webhook", "url": receiver.url, "secret_ref": "file:tromso-hook", **FAST}
            await bus.put_subscription({"id": "tromso-hook", "kommuner": ["5501"], "fields": GRANT, "delivery": hook})
            other = {**hook, "secret_ref": "file:oslo-hook"}
            await bus.put_subscription({"id": "oslo-hook", "kommuner": ["0301"], "fields": GRANT, "delivery": other})
            await bus.put_subscription(
                {
                    "id": "nasjonal-kafka",
                    "kommuner": "all",
                    "public_body": True,
                    "fields": GRANT,
                    "delivery": {"kind": "kafka"},
                }
            )
            env = bus.worker.env
            names = topic_names(bus.app_id)

            planned = _cli(env, "announce-reform", "--plan")  # the latest reform: 2024-01-01
            assert planned.returncode == 0, planned.stderr
            assert "KommuneRenumbering 2024-01-01: 114 kommunenumre retired" in planned.stdout
            assert "  nasjonal-kafka\n  tromso-hook\nwould send it to 2 subscription(s)" in planned.stdout
            assert [r async for r in read_topic(kafka_bootstrap, names.deliveries)] == [], "--plan sends nothing"

            sent = _cli(env, "announce-reform", "2024-01-01")
            assert sent.returncode == 0, sent.stderr
            assert "sent it to 2 subscription(s)" in sent.stdout
            await bus.wait_for(receiver, lambda: len(receiver.events()) >= 1, 60, "the renumbering delivered")

            [received] = receiver.events()  # its signature verified by standardwebhooks, parsed by cloudevents
            event = received.event
            assert event["type"] == TYPE and event["subject"] == "kommuner/2024-01-01"
            assert event["source"] == "urn:no:samband:reference"
            data = event.get_data()
            assert data["validFrom"] == "2024-01-01" and len(data["changes"]) == 114
            assert {"oldCode": "5401", "oldName": "Tromsø", "newCodes": ["5501"], "newNames": ["Tromsø"]} in data[
                "changes"
            ]
            assert {
                "oldCode": "1507",
                "oldName": "Ålesund",
                "newCodes": ["1508", "1580"],
                "newNames": ["Ålesund", "Haram"],
            } in data["changes"]
            assert received.webhook_id == f"{event['id']}.tromso-hook"

            [(key, value, headers)] = await asyncio.to_thread(
                _consume, kafka_bootstrap, bus.subscriber_topic("nasjonal-kafka"), bus.registry_url, 1, 60
            )
            assert key == "kommuner/2024-01-01"
            assert value["validFrom"] == REFORM and len(value["changes"]) == 114
            assert headers["ce_type"] == TYPE and headers["samband-idempotency-key"] == f"{event['id']}.nasjonal-kafka"

            audit = [e for e in await AuditLog(kafka_bootstrap, names.audit).entries() if e["action"] == "announce"]
            assert sorted((e["subscription"], e["detail"]) for e in audit) == [
                (sub_id, f"KommuneRenumbering 2024-01-01, event {event['id']}")
                for sub_id in ("nasjonal-kafka", "tromso-hook")
            ]

            disclosed = [r.key async for r in read_topic(kafka_bootstrap, names.disclosures)]
            assert not [k for k in disclosed if k.startswith(b"reference/")], "no person's access report holds it"
            alone = _cli(env, "announce-reform", "--subscription", "oslo-hook")
            assert alone.returncode == 1 and "oslo-hook does not get it" in alone.stderr

            # Announced again: the same idempotency key, for a subscriber to see it once.
            assert _cli(env, "announce-reform", "2024-01-01").returncode == 0
            await bus.wait_for(receiver, lambda: len(receiver.events()) >= 2, 60, "the second announcement delivered")
            assert {r.webhook_id for r in receiver.events()} == {received.webhook_id}
            assert all(r.event["subject"] == "kommuner/2024-01-01" for r in receiver.events())
        finally:
            await receiver.stop()
