"""Tenants of the subscriptions API, through HTTP and the CLI of a real `samband worker`: an owner
sees and changes only its own subscriptions, grants that widen access need the operator scope,
and every write is in `samband audit` under the token's name, never the token."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import jsonschema
import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from bus_settings import PSEUDONYM_KEY
from subscription_factory import subscription
from support import free_port, unique_name
from worker_process import WorkerProcess

from agents.subscriptions.audit import os_user
from agents.web.asyncapi import asyncapi_document

_DELIVERY_TESTS = str(Path(__file__).resolve().parents[1] / "delivery")
if _DELIVERY_TESTS not in sys.path:
    sys.path.insert(0, _DELIVERY_TESTS)
from webhook_receiver import Receiver  # noqa: E402

BERGEN, OSLO = "4601", "0301"
TOKENS = {
    "bergen-helse": {
        "token": "bergen-token-0123456789",
        "owner": "Bergen kommune",
        "subscriptions": {"prefix": "bergen-"},
        "kommuner": [BERGEN],
        "scopes": ["subscriptions:read", "subscriptions:write"],
    },
    "bergen-innsyn": {
        "token": "bergen-read-token-0123456789",
        "owner": "Bergen kommune",
        "subscriptions": {"prefix": "bergen-"},
        "kommuner": [BERGEN],
        "scopes": ["subscriptions:read"],
    },
    "oslo-bibliotek": {
        "token": "oslo-token-0123456789",
        "owner": "Oslo kommune",
        "subscriptions": {"ids": ["oslo-bibliotek"]},
        "kommuner": [OSLO],
        "scopes": ["subscriptions:read", "subscriptions:write"],
    },
    "drift": {
        "token": "operator-token-0123456789",
        "owner": "Samband drift",
        "scopes": [
            "subscriptions:read",
            "subscriptions:write",
            "subscriptions:operator",
            "operations:read",
            "dlq:replay",
        ],
    },
}
OSLO_SECRET_ENV = "SAMBAND_WEBHOOK_SECRET_OSLO_BIBLIOTEK"
OSLO_SECRET = "whsec_dGVzdC1vc2xvLXNlY3JldC0wMTIzNDU2Nzg5"


def _as(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]['token']}"}


def _sub(sub_id: str, kommuner=(BERGEN,), **changes) -> dict:
    body = json.loads(
        subscription(
            sub_id,
            list(kommuner) if kommuner != "all" else "all",
            ["Death"],
            {"Death": ["deathDate"]},
            public_body=False,
        ).to_json()
    )
    return {**body, **changes}


class Tenants:
    def __init__(self, base: str, env: dict[str, str], receiver_url: str):
        self.base, self.env, self.receiver_url = base, env, receiver_url

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "agents.cli", *args], env=self.env, capture_output=True, text=True, timeout=60
        )

    def audit(self, *args: str) -> list[dict]:
        done = self.cli("audit", "--json", *args)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
async def tenants(kafka_bootstrap, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tenants")
    receiver = Receiver(OSLO_SECRET)
    receiver_url = await receiver.start()
    token_file = tmp / "tokens.yaml"
    token_file.write_text(yaml.safe_dump(TOKENS))
    app_id = unique_name("tenants")
    env = {
        **os.environ,
        "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SAMBAND_APP_ID": app_id,
        "SAMBAND_DATA_DIR": str(tmp / "worker-data"),
        "SAMBAND_WEB_PORT": str(free_port()),
        "SAMBAND_LOG_FORMAT": "json",
        "SAMBAND_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "SAMBAND_API_TOKENS_FILE": str(token_file),
        OSLO_SECRET_ENV: OSLO_SECRET,
    }
    env.pop("SAMBAND_API_TOKENS", None)
    worker = WorkerProcess(env, tmp / "worker.log")
    worker.start()
    base = f"http://127.0.0.1:{env['SAMBAND_WEB_PORT']}"
    try:
        await _wait_ready(base, worker)
        yield Tenants(base, env, receiver_url)
    finally:
        assert worker.stop() == 0, worker.log_tail()
        await receiver.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([t for t in await admin.list_topics() if t.startswith(app_id)])
        finally:
            await admin.close()


async def _wait_ready(base: str, worker: WorkerProcess, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout), aiohttp.ClientSession() as http:
        while True:
            assert worker.process.poll() is None, worker.log_tail()
            try:
                async with http.get(f"{base}/subscriptions", headers=_as("drift")) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)  # poll interval inside the timeout


async def test_an_owner_neither_sees_nor_changes_another_tenants_subscription(tenants):
    oslo = _sub(
        "oslo-bibliotek",
        [OSLO],
        delivery={"kind": "webhook", "url": tenants.receiver_url, "secret_ref": f"env:{OSLO_SECRET_ENV}"},
    )
    async with aiohttp.ClientSession(base_url=tenants.base) as http:
        async with http.post("/subscriptions", json=oslo, headers=_as("oslo-bibliotek")) as r:
            assert r.status == 201, await r.text()
        async with http.post("/subscriptions", json=_sub("bergen-bibliotek"), headers=_as("bergen-helse")) as r:
            assert r.status == 201, await r.text()

        for method, body in (("GET", None), ("PUT", {**oslo, "legal_basis": "Bergen tar over"}), ("DELETE", None)):
            async with http.request(
                method, "/subscriptions/oslo-bibliotek", json=body, headers=_as("bergen-helse")
            ) as r:
                assert r.status == 404 and (await r.json())["error"] == "subscription.not_found", method
        for reader in ("bergen-helse", "bergen-innsyn"):
            async with http.get("/subscriptions", headers=_as(reader)) as r:
                listed = await r.text()
            assert [s["id"] for s in json.loads(listed)["subscriptions"]] == ["bergen-bibliotek"]
            assert tenants.receiver_url not in listed and OSLO_SECRET_ENV not in listed

        async with http.get("/subscriptions/oslo-bibliotek", headers=_as("oslo-bibliotek")) as r:
            own = await r.json()
        assert own["legal_basis"] == oslo["legal_basis"] and own["delivery"]["secret_ref"] == f"env:{OSLO_SECRET_ENV}"
        async with http.get("/subscriptions", headers=_as("drift")) as r:
            assert {"oslo-bibliotek", "bergen-bibliotek"} <= {s["id"] for s in (await r.json())["subscriptions"]}


async def test_an_owner_creates_only_ids_it_owns(tenants):
    async with aiohttp.ClientSession(base_url=tenants.base) as http:
        async with http.post("/subscriptions", json=_sub("oslo-skole"), headers=_as("bergen-helse")) as r:
            assert r.status == 403 and (await r.json())["error"] == "auth.id_not_owned"
        async with http.put("/subscriptions/oslo-skole", json=_sub("oslo-skole"), headers=_as("bergen-helse")) as r:
            assert r.status == 404
        async with http.put(
            "/subscriptions/bergen-skole", json=_sub("bergen-skole"), headers=_as("bergen-innsyn")
        ) as r:
            assert r.status == 403 and (await r.json())["error"] == "auth.scope_missing"
        async with http.get("/subscriptions/oslo-skole", headers=_as("drift")) as r:
            assert r.status == 404


async def test_grants_that_widen_access_need_the_operator(tenants):
    confidential = {"Death": ["deathDate", "envelope.addressProtection"]}
    widening = {
        "public_body: true": _sub("bergen-helse", public_body=True),
        "kommuner: all": _sub("bergen-helse", "all"),
        f"kommuner outside the token's: {OSLO}": _sub("bergen-helse", [BERGEN, OSLO]),
    }
    async with aiohttp.ClientSession(base_url=tenants.base) as http:
        for grant, body in widening.items():
            async with http.post("/subscriptions", json=body, headers=_as("bergen-helse")) as r:
                refusal = await r.json()
            assert r.status == 403 and refusal["error"] == "auth.operator_required", grant
            assert refusal["problems"] == [grant]
        async with http.get("/subscriptions/bergen-helse", headers=_as("drift")) as r:
            assert r.status == 404, "nothing refused was written"

        # The operator grants public_body; the owner may then change it without widening it further.
        async with http.post("/subscriptions", json=_sub("bergen-helse", public_body=True), headers=_as("drift")) as r:
            assert r.status == 201
        async with http.put(
            "/subscriptions/bergen-helse",
            headers=_as("bergen-helse"),
            json=_sub("bergen-helse", public_body=True, legal_basis="Helse- og omsorgstjenesteloven"),
        ) as r:
            assert r.status == 200, await r.text()
        async with http.put(
            "/subscriptions/bergen-helse",
            headers=_as("bergen-helse"),
            json=_sub("bergen-helse", public_body=True, fields=confidential),
        ) as r:
            refusal = await r.json()
        assert r.status == 403 and refusal["problems"] == ["confidential field fields.Death.envelope.addressProtection"]
        async with http.put(
            "/subscriptions/bergen-helse",
            headers=_as("drift"),
            json=_sub("bergen-helse", "all", public_body=True, fields=confidential),
        ) as r:
            assert r.status == 200, await r.text()
        async with http.get("/subscriptions/bergen-helse", headers=_as("bergen-helse")) as r:
            assert (await r.json())["kommuner"] == "all"


async def test_every_write_is_in_samband_audit_under_the_tokens_name(tenants):
    async with aiohttp.ClientSession(base_url=tenants.base) as http:
        async with http.post("/subscriptions", json=_sub("bergen-revisjon"), headers=_as("bergen-helse")) as r:
            assert r.status == 201
        async with http.delete("/subscriptions/oslo-revisjon", headers=_as("bergen-helse")) as r:
            assert r.status == 404
        async with http.delete("/subscriptions/bergen-revisjon", headers=_as("bergen-helse")) as r:
            assert r.status == 204
    config = Path(tenants.env["SAMBAND_DATA_DIR"]).parent / "subscriptions"
    config.mkdir()
    (config / "drift.yaml").write_text(yaml.safe_dump(_sub("bergen-drift")))
    for command in (
        ("subscriptions", "apply", str(config)),
        ("subscriptions", "pause", "bergen-drift"),
        ("subscriptions", "delete", "bergen-drift"),
    ):
        done = tenants.cli(*command)
        assert done.returncode == 0, done.stderr

    listed = tenants.cli("audit")
    assert listed.returncode == 0, listed.stderr
    assert "bergen-revisjon" in listed.stdout and "bergen-helse" in listed.stdout
    assert not any(entry["token"] in listed.stdout for entry in TOKENS.values())
    revisjon = [
        (e["name"], e["owner"], e["action"], e["subscription"], e["outcome"], e["via"])
        for e in tenants.audit()
        if e["subscription"] in ("bergen-revisjon", "oslo-revisjon")
    ]
    assert revisjon == [
        ("bergen-helse", "Bergen kommune", "create", "bergen-revisjon", "ok", "api"),
        ("bergen-helse", "Bergen kommune", "delete", "oslo-revisjon", "subscription.not_found", "api"),
        ("bergen-helse", "Bergen kommune", "delete", "bergen-revisjon", "ok", "api"),
    ]
    drift = tenants.audit("--subscription", "bergen-drift")
    assert [(e["via"], e["name"], e["action"]) for e in drift] == [
        ("cli", os_user(), "create"),
        ("cli", os_user(), "pause"),
        ("cli", os_user(), "delete"),
    ]
    assert tenants.audit("--since", drift[-1]["time"]) == [drift[-1]]


async def _schemathesis(base: str, token: str, report: Path, *options: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json",
        "--checks", "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
        "--seed", "13", "--header", f"Authorization: {_as(token)['Authorization']}", "--report-dir", str(report),
        *options, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, output.decode()[-4000:]


async def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(tenants, tmp_path):
    """Every answer, 403 and 404 of tenants included, is one the OpenAPI document declares: on every
    endpoint for a tenant, and on the operations, dashboard, registry and document endpoints for the
    operator, whose token reaches them. /readyz is left out: its 503 is its meaning, and schemathesis
    counts every 5xx a failure; its answer is held against the document below."""
    await _schemathesis(
        tenants.base, "bergen-helse", tmp_path / "tenant", "--max-examples", "30", "--exclude-path", "/readyz"
    )
    await _schemathesis(
        tenants.base, "drift", tmp_path / "operator", "--max-examples", "10",
        "--exclude-path-regex", "^/subscriptions|^/readyz",
    )  # fmt: skip
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{tenants.base}/openapi.json") as response:
            document = await response.json()
        async with session.get(f"{tenants.base}/readyz") as response:
            assert str(response.status) in document["paths"]["/readyz"]["get"]["responses"]
            readiness = await response.json()
    validator = jsonschema.Draft202012Validator({**document, "$ref": "#/components/schemas/Readiness"})
    assert not list(validator.iter_errors(readiness))


async def test_the_worker_serves_the_asyncapi_document_of_its_own_topics(tenants):
    async with aiohttp.ClientSession() as session, session.get(f"{tenants.base}/asyncapi.json") as response:
        assert response.status == 200
        document = await response.json()
    app_id = tenants.env["SAMBAND_APP_ID"]
    assert document == json.loads(json.dumps(asyncapi_document(app_id, "subscriber.")))
    assert document["channels"]["events"]["address"] == f"{app_id}-events"
