"""The worker's documents: its OpenAPI document describes every route it serves (and no other),
and its AsyncAPI document of the topics passes the AsyncAPI project's own parser."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agents.assembly import build_worker
from agents.config import Settings
from agents.web.asyncapi import asyncapi_document
from agents.web.openapi import openapi_document
from bus.topics import TABLE

PARSER_FILES = Path(__file__).with_name("asyncapi")
METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH"}


def _served_routes(monkeypatch, tmp_path, **env: str) -> set[tuple[str, str]]:
    """(method, path) of every route a worker built with these settings serves (HEAD aside)."""
    monkeypatch.setenv("SAMBAND_DEVELOPMENT", "true")
    monkeypatch.setenv("SAMBAND_DATA_DIR", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = build_worker(Settings())
    return {
        (route.method, route.resource.canonical)
        for route in app.web.web_app.router.routes()
        if route.method in METHODS and route.resource is not None
    }


def _documented(document: dict) -> set[tuple[str, str]]:
    return {
        (method.upper(), path) for path, item in document["paths"].items() for method in item if method != "parameters"
    }


def test_the_openapi_document_describes_every_route_of_the_worker(monkeypatch, tmp_path):
    assert _documented(openapi_document(with_registry=True)) == _served_routes(monkeypatch, tmp_path)


def test_with_an_external_registry_the_document_leaves_the_registry_out(monkeypatch, tmp_path):
    served = _served_routes(monkeypatch, tmp_path, SAMBAND_SCHEMA_REGISTRY_URL="http://127.0.0.1:1")
    assert _documented(openapi_document(with_registry=False)) == served
    assert not any(path.startswith("/subjects") for _, path in served)


def test_a_put_body_may_leave_out_the_id_the_path_gives():
    document = openapi_document()
    put = document["paths"]["/subscriptions/{id}"]["put"]["requestBody"]["content"]["application/json"]["schema"]
    without_id = document["components"]["schemas"][put["$ref"].rsplit("/", 1)[1]]
    assert "id" not in without_id["required"] and "kommuner" in without_id["required"]
    assert "400" in document["paths"]["/subscriptions"]["post"]["responses"]  # request.invalid_json


@pytest.fixture(scope="session")
def asyncapi_parser() -> Path:
    """A folder with the AsyncAPI parser installed by npm (versions of package-lock.json), kept in
    the user's cache between runs, never in the tree. One installer at a time across xdist workers."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed: `make test` installs them (Debian packages nodejs, npm)")
    lock = (PARSER_FILES / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "samband"
    folder = cache / f"asyncapi-parser-{hashlib.sha256(lock).hexdigest()[:12]}"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "asyncapi-parser.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not (folder / "node_modules" / "@asyncapi" / "parser").is_dir():
            folder.mkdir(exist_ok=True)
            for name in ("package.json", "package-lock.json"):
                shutil.copy(PARSER_FILES / name, folder / name)
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder, check=True,
                           capture_output=True, timeout=600)  # fmt: skip
        shutil.copy(PARSER_FILES / "validate.mjs", folder / "validate.mjs")  # imports resolve from its folder
    return folder


def _parse(parser: Path, document: dict, tmp_path: Path) -> tuple[int, list[dict]]:
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(document))
    done = subprocess.run(
        ["node", str(parser / "validate.mjs"), str(path)], capture_output=True, text=True, timeout=120
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines or done.returncode == 0, done.stderr
    return done.returncode, lines


def test_the_asyncapi_document_passes_the_asyncapi_parser_without_a_diagnostic(asyncapi_parser, tmp_path):
    code, lines = _parse(asyncapi_parser, asyncapi_document("samband", "subscriber."), tmp_path)
    assert code == 0, lines
    assert [line for line in lines if "severity" in line] == []  # not even a warning
    assert lines[-1]["channels"] == len(TABLE) + 1  # every topic of the table, and a subscriber's own


def test_the_parser_does_report_a_broken_document(asyncapi_parser, tmp_path):
    broken = json.loads(json.dumps(asyncapi_document("samband", "subscriber.")))
    broken["operations"]["canonicalEvents"]["channel"] = {"$ref": "#/channels/nowhere"}
    code, lines = _parse(asyncapi_parser, broken, tmp_path)
    assert code == 1 and [line["code"] for line in lines] == ["invalid-ref"]


def test_the_asyncapi_document_holds_each_event_types_avro_schema_and_each_topics_key():
    document = asyncapi_document("oslo", "sub.")
    move = document["components"]["messages"]["MoveAvro"]
    assert move["payload"]["schemaFormat"].startswith("application/vnd.apache.avro")
    assert move["payload"]["schema"]["name"] == "Move" and move["bindings"]["kafka"]["key"]["type"] == "string"
    channels = document["channels"]
    assert channels["events"]["address"] == "oslo-events" and channels["subscriber"]["address"] == "sub.{subscription}"
    assert set(channels["ingest"]["messages"]) >= {"MoveAvro", "MoveCloudEvent"}
    headers = document["components"]["messages"]["DeadLetter"]["headers"]["properties"]
    assert {"samband-dlq-reason", "samband-dlq-stage", "samband-dlq-event-id"} <= set(headers)
