"""The conformance kit's delivery-kind part, run for each built-in kind against its real receiving
side: an HTTP server on 127.0.0.1 that verifies signatures, a topic on the real broker, a folder."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from webhook_receiver import Receiver

from bus.reading import read_topic
from connectors.testing.sink_kit import SUBSCRIBER, DeliveryKindConformance
from connectors.webhook.network import AllowList
from schemas.catalog import catalog
from schemas.registry import CatalogRegistry

SECRET_ENV = "SAMBAND_WEBHOOK_SECRET_" + SUBSCRIBER.id.upper().replace("-", "_")


class TestWebhookKind(DeliveryKindConformance):
    kind = "webhook"
    invalid_configs = [
        ({"url": "ftp://x", "secret_ref": f"env:{SECRET_ENV}"}, "url"),
        ({"url": "https://x.example", "secret_ref": f"env:{SECRET_ENV}", "max_concurrency": 0}, "max_concurrency"),
        ({"url": "https://x.example", "secret_ref": f"env:{SECRET_ENV}", "token": "hunter2-value"}, "token"),
    ]
    secret_values = ("hunter2-value",)

    @asynccontextmanager
    async def environment(self, tmp_path):
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(SECRET_ENV, secret)
            receiver = Receiver(secret)
            await receiver.start()
            try:
                yield receiver
            finally:
                await receiver.stop()

    def config(self, receiver):
        return {"url": receiver.url, "secret_ref": f"env:{SECRET_ENV}"}

    def lends(self, receiver):
        return {"webhook_allow": AllowList.parse("127.0.0.1")}

    async def received(self, receiver):
        return [(r.webhook_id, r.body) for r in receiver.events()]


class TestWebhookBatchKind(TestWebhookKind):
    """The same kind in CloudEvents batch mode: the whole conformance suite again."""

    def config(self, receiver):
        return {**super().config(receiver), "batch": {"max_events": 10, "max_wait_ms": 0}}


@dataclass
class TopicSide:
    bootstrap: str
    prefix: str
    writes: object

    @property
    def topic(self) -> str:
        return self.prefix + SUBSCRIBER.id


@pytest.mark.kafka
class TestKafkaKind(DeliveryKindConformance):
    kind = "kafka"
    invalid_configs = [({"topic": "samband-events"}, "(config)"), ({"timeout": -1}, "timeout")]

    @pytest.fixture(autouse=True)
    def _broker(self, kafka_bootstrap):
        self.bootstrap = kafka_bootstrap

    @asynccontextmanager
    async def environment(self, tmp_path):
        from agents.delivery.stage import DirectWrites

        writes = DirectWrites(self.bootstrap, f"kit-status-{uuid.uuid4().hex[:8]}")
        try:
            yield TopicSide(self.bootstrap, f"kit-{uuid.uuid4().hex[:8]}.", writes)
        finally:
            await writes.stop()

    def config(self, side):
        return {}

    def lends(self, side):
        return {
            "topic_writer": side.writes.write,
            "ensure_topic": side.writes.ensure,
            "schema_registry": CatalogRegistry(catalog()),
            "subscriber_topic_prefix": side.prefix,
        }

    async def received(self, side):
        records = [record async for record in read_topic(side.bootstrap, side.topic, timeout=10)]
        return [(dict(r.headers)["samband-idempotency-key"].decode(), r.value + (r.key or b"")) for r in records]


class TestFilesKind(DeliveryKindConformance):
    kind = "files"
    invalid_configs = [({"directory": "/etc"}, "directory"), ({"max_bytes": 10}, "max_bytes")]

    @asynccontextmanager
    async def environment(self, tmp_path):
        yield tmp_path / "outbound"

    def config(self, root):
        return {"max_age_s": 3600}

    def lends(self, root):
        return {"files_root": str(root)}

    async def received(self, root):
        folder = Path(root) / SUBSCRIBER.id
        return [
            (json.loads(line)["idempotency_key"], line.encode())
            for path in sorted(folder.glob("*.jsonl"))
            for line in path.read_text().splitlines()
        ]
