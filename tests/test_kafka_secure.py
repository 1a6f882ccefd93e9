"""The SASL_SSL lane: `samband kafka up --secure` starts a real broker with TLS, SCRAM-SHA-512 users
and ACLs. A worker signed in as `worker` runs the core flow (a connector's event in, routed, to a
webhook and to a Kafka subscriber that reads its own topic as its own principal). A client without
credentials, with a wrong password, or outside its ACLs is refused; mTLS signs in by certificate."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import GroupAuthorizationFailedError, KafkaError, TopicAuthorizationFailedError
from delivery_bus import complete
from routing_events import encode, event, synthetic_number
from support import free_port, free_port_run
from webhook_receiver import Receiver
from worker_process import WorkerProcess

from agents.manifests import RETENTION_MS
from bus.clients import Security
from bus.topics import TABLE, ensure_table_topics, ensure_topics
from connectors.webhook.secrets import new_secret
from deploy import launcher
from schemas.pseudonym import pseudonym

APP = "samband"  # the secure set-up's ACLs are made for this app id
PERSON = synthetic_number(14, 2, 51, 300)


class SecureBroker:
    def __init__(self, state_dir):
        self.env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
        self.env |= {"SAMBAND_KAFKA_PORT": str(free_port_run(3)), "SAMBAND_KAFKA_STATE_DIR": str(state_dir)}
        self.env |= {"SAMBAND_APP_ID": APP}

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "agents.cli", "kafka", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    def settings(self, principal: str, *flags: str) -> dict[str, str]:
        """The SAMBAND_KAFKA_* settings `samband kafka env` gives for a principal."""
        done = self.cli("env", principal, *flags)
        assert done.returncode == 0, done.stderr
        return dict(line.removeprefix("export ").split("=", 1) for line in done.stdout.splitlines())

    def options(self, principal: str, *flags: str) -> dict:
        """aiokafka options of a client signed in as `principal`."""
        s = self.settings(principal, *flags)
        security = Security(
            protocol=s["SAMBAND_KAFKA_SECURITY_PROTOCOL"],
            username=s.get("SAMBAND_KAFKA_SASL_USERNAME", ""),
            password_file=s.get("SAMBAND_KAFKA_SASL_PASSWORD_FILE", ""),
            cafile=s["SAMBAND_KAFKA_SSL_CAFILE"],
            certfile=s.get("SAMBAND_KAFKA_SSL_CERTFILE", ""),
            keyfile=s.get("SAMBAND_KAFKA_SSL_KEYFILE", ""),
        )
        return {"bootstrap_servers": s["SAMBAND_KAFKA_BOOTSTRAP_SERVERS"], **security.aiokafka_options()}


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    broker = SecureBroker(tmp_path_factory.mktemp("secure") / "kafka")
    up = broker.cli("up", "--secure")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield broker
    finally:
        broker.cli("down")


async def _send(options: dict, topic: str, value: bytes, key: bytes) -> None:
    producer = AIOKafkaProducer(**{"request_timeout_ms": 10_000, **options}, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _read(options: dict, topic: str, count: int, timeout: float = 60, group: str | None = None) -> list:
    consumer = AIOKafkaConsumer(
        topic, **options, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        records: list = []
        async with asyncio.timeout(timeout):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=1000)).values():
                    records += batch
        return records
    finally:
        await consumer.stop()


async def test_the_core_flow_runs_over_sasl_ssl_each_principal_signed_in_as_itself(
    secure_broker, tmp_path, monkeypatch
):
    worker_settings = secure_broker.settings("worker")
    for name, value in worker_settings.items():  # the client factory (bus/clients.py) reads them
        monkeypatch.setenv(name, value)
    # Made by the cluster's administrator, with the retentions the generated manifests give them.
    await ensure_table_topics(worker_settings["SAMBAND_KAFKA_BOOTSTRAP_SERVERS"], APP, list(TABLE), RETENTION_MS)
    added = secure_broker.cli("add-subscriber", "skole-kafka")
    assert added.returncode == 0 and "principal subscriber-skole-kafka" in added.stdout, added.stderr
    as_worker, as_connector = secure_broker.options("worker"), secure_broker.options("connector")
    as_subscriber = secure_broker.options("subscriber-skole-kafka")

    secret = new_secret()
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "helse-hook").write_text(secret)
    receiver = Receiver(secret)
    url = await receiver.start()
    fields = {"Death": ["deathDate"]}
    subscriptions = [
        complete({"id": "helse-hook", "fields": fields, "delivery": {"kind": "webhook", "url": url,
                  "secret_ref": "file:helse-hook", "retry_schedule": [0.1, 0.2]}}),
        complete({"id": "skole-kafka", "fields": fields, "delivery": {"kind": "kafka"}}),
    ]  # fmt: skip
    for sub in subscriptions:  # written as the worker principal, the only one that may
        await _send(as_worker, f"{APP}-subscriptions", json.dumps(sub).encode(), sub["id"].encode())

    worker = WorkerProcess(
        {
            **os.environ,
            **worker_settings,
            "SAMBAND_APP_ID": APP,
            "SAMBAND_DATA_DIR": str(tmp_path / "worker-data"),
            "SAMBAND_WEB_PORT": str(free_port()),
            "SAMBAND_SECRETS_DIR": str(secrets_dir),
            "SAMBAND_LOG_FORMAT": "json",
        },
        tmp_path / "worker.log",
    )
    worker.start()
    try:
        death = event("Death", PERSON, ["0301"])
        key = pseudonym(PERSON, os.environ["SAMBAND_PSEUDONYM_KEY"].encode()).encode()
        await _send(as_connector, f"{APP}-ingest", encode(death), key)  # a source connector's write

        await receiver.wait_for(lambda: len(receiver.events()) >= 1, 120, "delivered the death")
        [hooked] = receiver.events()
        assert hooked.event["id"] == death["envelope"]["id"]
        [record] = await _read(as_subscriber, "subscriber.skole-kafka", 1, group="subscriber.skole-kafka.reader")
        assert dict(record.headers)["ce_id"].decode() == death["envelope"]["id"]

        # The read-only operator sees the worker process and its partitions (through librdkafka's
        # admin client, with the same TLS and SASL settings), and every section but those it may not read.
        status = subprocess.run(
            [sys.executable, "-m", "agents.cli", "status", "--json", "--interval", "0"],
            env={**os.environ, **secure_broker.settings("operator"), "SAMBAND_APP_ID": APP},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert status.stdout, status.stderr
        [process] = json.loads(status.stdout)["workers"]
        assert process["ingest"] == process["route"] == process["deliver"] == [0, 1, 2, 3], status.stdout
        report = json.loads(status.stdout)
        assert report["subscriptions"] is None  # the operator may not read them
        assert report["incomplete"] == ["subscriptions"]
        assert {"topics", "lag", "dead_letters"} <= {name for name, data in report.items() if data}
    finally:
        await receiver.stop()
        assert worker.stop() == 0, worker.log_tail()


async def test_a_client_without_credentials_or_outside_its_acls_is_refused(secure_broker, tmp_path):
    as_worker = secure_broker.options("worker")
    await _send(as_worker, f"{APP}-events", b"not a person's event", b"k")  # the topic exists, with a record

    plain = {"bootstrap_servers": as_worker["bootstrap_servers"]}  # no TLS, no SASL
    with pytest.raises(KafkaError):
        await _send({**plain, "request_timeout_ms": 5000}, f"{APP}-events", b"x", b"k")

    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    cafile = secure_broker.settings("worker")["SAMBAND_KAFKA_SSL_CAFILE"]
    wrong_password = Security("SASL_SSL", username="worker", password_file=str(wrong), cafile=cafile)
    with pytest.raises(KafkaError):
        await _send({**plain, **wrong_password.aiokafka_options()}, f"{APP}-events", b"x", b"k")

    subscriber = secure_broker.cli("add-subscriber", "annen-kafka")
    assert subscriber.returncode == 0, subscriber.stderr
    refused = {
        "a subscriber reads the bus's events": ("subscriber-annen-kafka", f"{APP}-events"),
        "a subscriber reads another subscriber's topic": ("subscriber-annen-kafka", "subscriber.skole-kafka"),
        "the read-only operator reads the bus's events": ("operator", f"{APP}-events"),
        "a connector reads the bus's events": ("connector", f"{APP}-events"),
    }
    for what, (principal, topic) in refused.items():
        try:
            await _read(secure_broker.options(principal), topic, 1, timeout=20)
        except TopicAuthorizationFailedError:
            continue
        raise AssertionError(f"not refused: {what}")
    with pytest.raises(KafkaError):  # a connector writes into ingest, never straight into the events
        await _send(secure_broker.options("connector"), f"{APP}-events", b"x", b"k")

    # The operator reads what holds no personal data; the worker, by its certificate (mTLS), reads all.
    await _send(as_worker, f"{APP}-delivery-ledger", b"{}", b"e/s")
    assert await _read(secure_broker.options("operator"), f"{APP}-delivery-ledger", 1)
    assert await _read(secure_broker.options("worker", "--mtls"), f"{APP}-events", 1)


async def test_subscribers_cannot_take_each_others_groups_and_a_removed_one_is_revoked(secure_broker, monkeypatch):
    """Subscriber `a` may not join a consumer group of subscriber `ab` (found by a hostile review:
    group rights by bare prefix let it, and `ab` then got no partitions); a removed subscriber's
    credentials stop working; an id that is none is refused; a connector makes no topic."""
    for name, value in secure_broker.settings("worker").items():
        monkeypatch.setenv(name, value)
    as_worker = secure_broker.options("worker")
    for sub in ("a", "ab"):
        assert secure_broker.cli("add-subscriber", sub).returncode == 0
        await ensure_topics(as_worker["bootstrap_servers"], {f"subscriber.{sub}": {}}, 4)  # as delivery makes it
        await _send(as_worker, f"subscriber.{sub}", f"for {sub}".encode(), b"k")

    as_a = secure_broker.options("subscriber-a")
    assert await _read(as_a, "subscriber.a", 1, group="subscriber.a.reader")  # its own group: allowed
    try:
        await _read(as_a, "subscriber.a", 1, timeout=20, group="subscriber.ab.reader")
    except GroupAuthorizationFailedError:
        pass
    else:
        raise AssertionError("subscriber a joined a consumer group of subscriber ab")

    empty = secure_broker.cli("add-subscriber", "")
    assert empty.returncode == 2 and "is not a subscription id" in empty.stderr, empty.stderr

    removed = secure_broker.cli("remove-subscriber", "a")
    assert removed.returncode == 0 and "principal subscriber-a revoked" in removed.stdout, removed.stderr
    with pytest.raises(KafkaError):
        await _read(as_a, "subscriber.a", 1, timeout=20)  # the old password no longer signs in

    # A connector cannot make (and so cannot pre-make, with settings of its choosing) any bus topic.
    admin = AIOKafkaAdminClient(**secure_broker.options("connector"))
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(f"{APP}-deadletter-premade", 1, 1)])
    finally:
        await admin.close()
    [(_, error, *_)] = response.topic_errors
    assert error == TopicAuthorizationFailedError.errno


async def test_the_compose_secure_broker_runs_on_the_files_secure_files_makes(tmp_path, monkeypatch):
    """compose's `kafka-secure` service (profile `secure`) as far as it can be run without a container
    engine: the server.properties `samband kafka secure-files` wrote for it, its paths and listening
    address mapped as the mount and docker's published port map them, formatted and started with the
    launcher's jars as the service's command does with the image's scripts; `samband kafka grant`
    makes the users; the worker signs in and makes a bus topic, the connector may not."""
    broker = SecureBroker(tmp_path / "kafka")
    made = broker.cli("secure-files")
    assert made.returncode == 0, made.stderr
    secure_dir = tmp_path / "kafka" / "secure"
    port = broker.env["SAMBAND_KAFKA_PORT"]
    assert f"SAMBAND_KAFKA_SECURE_FILES={secure_dir} SAMBAND_KAFKA_PORT={port}" in made.stdout
    internal = int(made.stdout.split("SAMBAND_KAFKA_INTERNAL_PORT=")[1].split()[0])

    service = yaml.safe_load((Path(__file__).parents[1] / "deploy" / "compose.yaml").read_text())["services"][
        "kafka-secure"
    ]
    assert [v for v in service["volumes"] if v.endswith(f":{launcher.CONTAINER_SECURE_DIR}:ro")]  # read-only
    assert "kafka-secure-data:/var/lib/kafka/data" in service["volumes"]  # the data survives `down`
    properties = (secure_dir / launcher.CONTAINER_PROPERTIES).read_text().splitlines()
    assert "log.dirs=/var/lib/kafka/data" in properties
    # Listening on every interface of the container; clients told the address docker publishes on.
    assert (
        f"listeners=SASL_SSL://0.0.0.0:{port},CONTROLLER://0.0.0.0:{int(port) + 1},INTERNAL://0.0.0.0:{internal}"
        in properties
    )
    assert f"advertised.listeners=SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal}" in properties
    assert service["ports"] == [
        "127.0.0.1:${SAMBAND_KAFKA_PORT:-9092}:${SAMBAND_KAFKA_PORT:-9092}",
        "127.0.0.1:${SAMBAND_KAFKA_INTERNAL_PORT:-9094}:${SAMBAND_KAFKA_INTERNAL_PORT:-9094}",
    ]
    [script] = service["command"]
    inside = f"{launcher.CONTAINER_SECURE_DIR}/{launcher.CONTAINER_PROPERTIES}"
    format_step, start_step = script.split(" && ")
    assert f'--cluster-id "$$(cat {launcher.CONTAINER_SECURE_DIR}/{launcher.CONTAINER_CLUSTER_ID_FILE})"' in format_step
    assert f"--config {inside}" in format_step and start_step.endswith(f"kafka-server-start.sh {inside}")

    monkeypatch.setenv("SAMBAND_KAFKA_STATE_DIR", str(tmp_path / "kafka"))
    process = _run_as_compose_would(secure_dir, tmp_path)
    try:
        granted = broker.cli("grant")
        assert granted.returncode == 0, granted.stdout + granted.stderr + (tmp_path / "broker.log").read_text()[-2000:]
        assert f":{internal}" in broker.settings("worker", "--mtls")["SAMBAND_KAFKA_BOOTSTRAP_SERVERS"]

        as_worker = broker.options("worker")
        admin = AIOKafkaAdminClient(**as_worker)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(f"{APP}-compose-check", 1, 1)])
        finally:
            await admin.close()
        await _send(as_worker, f"{APP}-compose-check", b"x", b"k")
        assert await _read(broker.options("worker", "--mtls"), f"{APP}-compose-check", 1)
        with pytest.raises(KafkaError):  # a connector makes no topic, and may not write this one
            await _send(broker.options("connector"), f"{APP}-compose-check", b"x", b"k")
    finally:
        process.terminate()
        process.wait(60)


def _run_as_compose_would(secure_dir: Path, tmp_path: Path) -> subprocess.Popen:
    """The kafka-secure service's format and start steps, on the container's view mapped onto this
    machine: the mount, the data volume, and its every interface as the one address docker publishes on."""
    properties = (secure_dir / launcher.CONTAINER_PROPERTIES).read_text()
    properties = properties.replace(str(launcher.CONTAINER_SECURE_DIR), str(secure_dir))
    properties = properties.replace("/var/lib/kafka/data", str(tmp_path / "data")).replace("0.0.0.0", "127.0.0.1")
    mapped = tmp_path / "server.properties"
    mapped.write_text(properties)
    config = launcher.BrokerConfig.from_env()
    jars = launcher.ensure_jars(config)
    cluster_id = (secure_dir / launcher.CONTAINER_CLUSTER_ID_FILE).read_text().strip()
    formatted = subprocess.run(
        launcher._java_command(config, jars, "kafka.tools.StorageTool", "format", "--ignore-formatted",
                               f"--cluster-id={cluster_id}", f"--config={mapped}"),
        capture_output=True, text=True,
    )  # fmt: skip
    assert formatted.returncode == 0, formatted.stderr
    with open(tmp_path / "broker.log", "w") as log:
        return subprocess.Popen(launcher._java_command(config, jars, launcher.MAIN_CLASS, str(mapped)),
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
