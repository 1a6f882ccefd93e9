"""A whole `samband worker` (ingest, route, deliver, web) for the operations tests, on its own app id.

Reuses the delivery tests' DeliveryBus (tests/delivery/delivery_bus.py) and real webhook
receivers (tests/delivery/webhook_receiver.py), and the routing tests' synthetic events.
"""

from __future__ import annotations

import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

_TESTS = Path(__file__).resolve().parents[1]
for _folder in ("delivery", "routing"):
    if str(_TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(_TESTS / _folder))

from bus_settings import PSEUDONYM_KEY  # noqa: E402
from delivery_bus import DeliveryBus  # noqa: E402
from support import free_port, unique_name  # noqa: E402

REPLAY_TOKEN = "test-token-replay"
READ_ONLY_TOKEN = "test-token-read"


@asynccontextmanager
async def operations_bus(bootstrap: str, tmp: Path, extra_env: dict[str, str] | None = None):
    """A started DeliveryBus whose worker also ingests and routes, with a dlq:replay token; stopped on exit."""
    app_id = unique_name("ops")
    env = {
        **os.environ,
        "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SAMBAND_APP_ID": app_id,
        "SAMBAND_DATA_DIR": str(tmp / "worker-data"),
        "SAMBAND_WEB_PORT": str(free_port()),
        "SAMBAND_LOG_FORMAT": "json",
        "SAMBAND_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "SAMBAND_API_TOKENS": f"{REPLAY_TOKEN}=dlq:replay+subscriptions:read+operations:read,{READ_ONLY_TOKEN}=subscriptions:read",
        "SAMBAND_BREAKER_PROBE_SECONDS": "1",  # a suspended test subscriber is probed every second, not every 30
        **(extra_env or {}),
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{app_id}-{name}", 4, 1) for name in ("ingest", "events", "deadletter")])
    finally:
        await admin.close()
    bus = DeliveryBus(bootstrap, env, tmp / "worker.log")
    bus.web_url = f"http://127.0.0.1:{env['SAMBAND_WEB_PORT']}"
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


def full_subscription(sub_id: str, url: str, kommuner, event_types: list[str], fields: dict, **delivery) -> dict:
    """A routable subscription (agents/subscriptions/model.py) delivered by webhook with the bus's test secret
    (write it with `bus.put_subscription`, which puts the secret in the subscription's own file)."""
    return {
        "id": sub_id,
        "system": {"name": f"System {sub_id}", "owner": "Prøve kommune", "contact": "it@prove.example"},
        "legal_basis": "Testhjemmel § 1 (synthetic test subscription)",
        "public_body": True,
        "kommuner": kommuner,
        "event_types": event_types,
        "predicates": {},
        "fields": fields,
        "delivery": {"kind": "webhook", "url": url, "secret_ref": f"file:{sub_id}", **delivery},
    }
