"""deploy/: the Kubernetes manifests build, agree with the code they describe (the topic table,
the principals' ACLs, the settings), and the worker's settings in them are real ones."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from agents.config import Settings
from agents.manifests import OUT, rendered
from bus.clients import SECURITY_VARIABLES
from bus.topics import LAYOUT_VARIABLES, TABLE

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _env(manifest: str = "worker.yaml") -> dict[str, dict]:
    [deployment] = [d for d in _documents(KUBERNETES / manifest) if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {entry["name"]: entry for entry in container["env"]}


def test_the_generated_topics_and_users_are_what_the_code_gives():
    for name, text in rendered().items():
        assert (OUT / name).read_text() == text, f"{name} is stale: run `python -m agents.manifests --write`"
    topics = {d["spec"]["topicName"]: d["spec"] for d in _documents(OUT / "topics.yaml")}
    assert sorted(topics) == sorted(t.name("samband") for t in TABLE)


@pytest.mark.parametrize("manifest", ["worker.yaml", "connectors.yaml"])
def test_every_setting_the_manifests_give_is_a_real_one(manifest):
    known = {f"SAMBAND_{name.upper()}" for name in Settings.model_fields}
    known |= set(LAYOUT_VARIABLES) | set(SECURITY_VARIABLES)
    env = _env(manifest)
    assert sorted(set(env) - known) == []
    # The plain values are valid settings, as the worker or connector would read them.
    plain = {name: entry["value"] for name, entry in env.items() if "value" in entry and "_FILE" not in name}
    settings = Settings(**{name.removeprefix("SAMBAND_").lower(): value for name, value in plain.items()
                           if name.removeprefix("SAMBAND_").lower() in Settings.model_fields})  # fmt: skip
    assert settings.app_id == "samband"
    users = {d["metadata"]["name"] for d in _documents(OUT / "users.yaml")}
    assert env["SAMBAND_KAFKA_SASL_USERNAME"]["value"] in users


def test_the_connector_runs_an_installed_source_alone():
    from connectors.api import discover

    [deployment] = [d for d in _documents(KUBERNETES / "connectors.yaml") if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["connectors", "run"] and container["args"][2] in discover()
    # One pod at a time: a feed is read from one bookmark.
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"


def test_partitions_replicas_and_the_autoscaler_agree():
    partitions = int(_env()["SAMBAND_PARTITIONS"]["value"])
    events = next(d for d in _documents(OUT / "topics.yaml") if d["spec"]["topicName"] == "samband-events")
    assert events["spec"]["partitions"] == partitions
    [scaled] = [d for d in _documents(KUBERNETES / "autoscaling.yaml") if d["kind"] == "ScaledObject"]
    assert scaled["spec"]["maxReplicaCount"] == partitions  # a worker beyond the count would hold nothing
    groups = {t["metadata"]["consumerGroup"] for t in scaled["spec"]["triggers"]}
    assert groups == {"samband-ingest", "samband-router", "samband-delivery"}
    users = {d["metadata"]["name"] for d in _documents(OUT / "users.yaml")}
    env = _env()
    assert env["SAMBAND_KAFKA_SASL_USERNAME"]["value"] in users


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_the_whole_set():
    built = subprocess.run(["kubectl", "kustomize", str(KUBERNETES)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    kinds = sorted({d["kind"] for d in yaml.safe_load_all(built.stdout) if d})
    assert kinds == sorted(
        ["Deployment", "Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "Namespace", "NetworkPolicy",
         "PodDisruptionBudget", "ScaledObject", "Secret", "Service", "ServiceAccount", "TriggerAuthentication"]
    )  # fmt: skip
    assert all(
        d["metadata"].get("namespace") == "samband"
        for d in yaml.safe_load_all(built.stdout)
        if d and d["kind"] != "Namespace"
    )
