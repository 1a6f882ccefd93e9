"""The bus's registry endpoint, proven with confluent-kafka's own client and deserializer."""

import asyncio
import json
import threading
import urllib.error
import urllib.request

import pytest
from aiohttp import web
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from agents.web.schema_registry import add_routes
from schemas.catalog import ENVELOPE, catalog
from schemas.codec import Codec, WireFormatError
from schemas.examples import example
from schemas.registry import CatalogRegistry, RemoteRegistry


def http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def registry_url():
    """A real aiohttp server on 127.0.0.1 in its own thread, so blocking clients can call it."""
    loop = asyncio.new_event_loop()
    app = web.Application()
    add_routes(app, CatalogRegistry(catalog()))
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.run_until_complete(runner.cleanup())
    loop.close()


def test_confluent_avro_deserializer_decodes_a_message_from_our_codec(registry_url):
    codec = Codec(CatalogRegistry(catalog()))
    record = example("Move")
    data = codec.encode(record, codec.current_id("Move"))

    client = SchemaRegistryClient({"url": registry_url})
    decoded = AvroDeserializer(client)(data, SerializationContext("samband.events", MessageField.VALUE))

    assert decoded == record


def test_confluent_client_reads_subjects_and_versions(registry_url):
    client = SchemaRegistryClient({"url": registry_url})
    assert client.get_subjects() == catalog().subjects
    assert client.get_versions("no.samband.events.Move") == [1, 2]
    latest = client.get_latest_version("no.samband.events.Move")
    assert (latest.version, latest.schema_id) == (2, catalog().current("Move").id)
    v1 = client.get_version(ENVELOPE, 1)
    assert v1.schema_id == catalog().released(ENVELOPE)[0].id


def test_unknown_ids_and_subjects_get_confluent_error_codes(registry_url):
    assert http("GET", f"{registry_url}/schemas/ids/1") == (404, {"error_code": 40403, "message": "Schema not found"})
    assert http("GET", f"{registry_url}/subjects/nope/versions")[1]["error_code"] == 40401
    assert http("GET", f"{registry_url}/subjects/{ENVELOPE}/versions/99")[1]["error_code"] == 40402


def test_registering_a_schema_outside_the_catalog_is_refused(registry_url):
    body = {"schema": '{"type":"record","name":"X","fields":[]}'}
    assert http("POST", f"{registry_url}/subjects/{ENVELOPE}/versions", body)[0] == 404


def test_registering_a_catalog_schema_returns_its_id(registry_url):
    current = catalog().current("Move")
    body = {"schema": current.text}
    assert http("POST", f"{registry_url}/subjects/{current.subject}/versions", body) == (200, {"id": current.id})


def test_remote_registry_setting_uses_an_external_registry_for_ids_and_schemas(registry_url):
    # Our own endpoint stands in for Confluent/Karapace: the same REST API.
    remote = Codec(RemoteRegistry(registry_url, catalog()))
    local = Codec(CatalogRegistry(catalog()))
    record = example("Death")
    data = remote.encode(record, remote.current_id("Death"))
    assert local.decode(data) == record
    assert (
        Codec(RemoteRegistry(registry_url, catalog())).decode(local.encode(record, local.current_id("Death"))) == record
    )


def test_remote_registry_unknown_id_is_a_wire_error(registry_url):
    with pytest.raises(WireFormatError) as raised:
        Codec(RemoteRegistry(registry_url, catalog())).decode(b"\x00\x00\x00\x00\x01\x02")
    assert raised.value.reason == "wire.unknown_schema_id"


async def test_confluent_consumer_reads_our_events_from_a_real_topic(registry_url, kafka_bootstrap, new_topic):
    """Standard Kafka tooling reads our topics: confluent-kafka's Consumer + AvroDeserializer, schema over HTTP."""
    from confluent_kafka import Consumer
    from kafka_io import produce

    topic = await new_topic(partitions=1, prefix="samband-events")
    codec = Codec(CatalogRegistry(catalog()))
    records = [example(name) for name in ("Birth", "Move", "Death")]
    await produce(
        kafka_bootstrap,
        topic,
        [codec.encode(r, codec.current_id(n)) for r, n in zip(records, ("Birth", "Move", "Death"), strict=False)],
    )

    def read_with_confluent() -> list[dict]:
        consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topic, "auto.offset.reset": "earliest"})
        deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
        consumer.subscribe([topic])
        decoded: list[dict] = []
        try:
            for _ in range(60):  # at most ~60 s of 1 s polls
                message = consumer.poll(1.0)
                if message is None:
                    continue
                assert message.error() is None, message.error()
                decoded.append(deserializer(message.value(), SerializationContext(topic, MessageField.VALUE)))
                if len(decoded) == len(records):
                    break
        finally:
            consumer.close()
        return decoded

    assert await asyncio.to_thread(read_with_confluent) == records
