"""Settings are validated at start with one clear line; logs are JSON off a terminal."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_setting_is_one_line_naming_the_variable():
    result = run_cli("worker", SAMBAND_WEB_PORT="not-a-port")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("samband: SAMBAND_WEB_PORT:")
    assert "Traceback" not in result.stderr


def test_bad_choice_names_the_variable():
    result = run_cli("worker", SAMBAND_LOG_FORMAT="xml")
    assert result.returncode == 2
    assert result.stderr.startswith("samband: SAMBAND_LOG_FORMAT:")


def test_a_heap_trim_more_often_than_once_a_second_is_refused_saying_why():
    result = run_cli("worker", SAMBAND_HEAP_TRIM_SECONDS="0.2")
    assert result.returncode == 2
    assert result.stderr.startswith("samband: SAMBAND_HEAP_TRIM_SECONDS:")
    assert "0 (never) or at least 1" in result.stderr


def test_bad_launcher_port_names_the_variable():
    result = run_cli("kafka", "status", SAMBAND_KAFKA_PORT="ninety")
    assert result.returncode == 2
    assert result.stderr.strip() == "samband: SAMBAND_KAFKA_PORT: expected a whole number, got 'ninety'"


def test_logs_are_json_lines_when_not_on_a_terminal():
    code = (
        "import logging, structlog\n"
        "from agents.logging import configure_logging\n"
        "configure_logging('info')\n"
        "structlog.get_logger('samband').info('routed', event_id='e-1', subscription='s-1')\n"
        "logging.getLogger('aiokafka').warning('from the stdlib')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert records[0]["event"] == "routed" and records[0]["event_id"] == "e-1" and records[0]["level"] == "info"
    assert records[1]["event"] == "from the stdlib" and records[1]["level"] == "warning"
    assert all("timestamp" in r for r in records)


def test_worker_refuses_the_development_or_a_short_pseudonym_key():
    for key in ("samband-development-pseudonym-key", "too-short-0123456789"):
        result = run_cli("worker", SAMBAND_PSEUDONYM_KEY=key, SAMBAND_DEVELOPMENT="false")
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("samband: SAMBAND_PSEUDONYM_KEY:"), result.stderr
        assert key not in result.stderr


def test_connectors_run_refuses_the_development_pseudonym_key(tmp_path):
    config = tmp_path / "feed.yaml"
    config.write_text("base_url: http://127.0.0.1:9/\n")
    result = run_cli(
        "connectors",
        "run",
        "folkeregister",
        "--config",
        str(config),
        SAMBAND_PSEUDONYM_KEY="samband-development-pseudonym-key",
        SAMBAND_DEVELOPMENT="false",
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("samband: SAMBAND_PSEUDONYM_KEY:")


def test_the_kafka_clients_repeated_lines_pass_once_per_window_and_then_say_how_many_were_left_out():
    import logging

    from agents.logging import LibraryRepeats

    now = [0.0]
    repeats = LibraryRepeats(window=30.0, clock=lambda: now[0])

    def line(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, ("127.0.0.1:9092",), None)

    passed = [repeats.filter(line("aiokafka.conn", "Unable connect to %s")) for _ in range(300)]
    assert passed.count(True) == 1 and passed[0]  # a broker down: one line, not 300
    assert repeats.filter(line("aiokafka.conn", "Connection closed"))  # another message is its own line
    assert all(
        repeats.filter(line("samband.stage", "Unable connect to %s")) for _ in range(3)
    )  # only the client's loggers
    now[0] = 30.0
    summary = line("aiokafka.conn", "Unable connect to %s")
    assert repeats.filter(summary)
    assert summary.getMessage() == "Unable connect to 127.0.0.1:9092 [299 more like it left out in 30 s]"


def test_incomplete_kafka_security_is_one_line_naming_what_to_set(tmp_path):
    result = run_cli("worker", SAMBAND_KAFKA_SECURITY_PROTOCOL="SASL_SSL", SAMBAND_KAFKA_SASL_USERNAME="worker")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "samband: SAMBAND_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs SAMBAND_KAFKA_SASL_USERNAME and "
        "SAMBAND_KAFKA_SASL_PASSWORD_FILE (a file holding the password, so it is in no environment)"
    )
    result = run_cli("topics", SAMBAND_KAFKA_SECURITY_PROTOCOL="TLS")
    assert result.returncode == 2
    assert result.stderr.startswith("samband: SAMBAND_KAFKA_SECURITY_PROTOCOL: expected one of PLAINTEXT, SSL,")
    missing = tmp_path / "nowhere" / "ca.pem"
    result = run_cli("worker", SAMBAND_KAFKA_SECURITY_PROTOCOL="SSL", SAMBAND_KAFKA_SSL_CAFILE=str(missing))
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"samband: SAMBAND_KAFKA_SSL_CAFILE: cannot read {missing} (No such file or directory)"
    )


def test_kafka_env_without_a_secure_set_up_says_how_to_make_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    result = subprocess.run(
        [sys.executable, "-m", "agents.cli", "kafka", "env", "worker"],
        env={**env, "SAMBAND_KAFKA_STATE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "samband: no secure set-up is kept here: start one with `samband kafka up --secure`"
    )


def test_keys_can_come_from_mounted_files_and_a_bad_file_is_one_line(tmp_path, monkeypatch):
    from agents.config import Settings, dead_letter_key, require_keys

    pseudonym_file, dlq_file = tmp_path / "pseudonym-key", tmp_path / "dlq-key"
    pseudonym_file.write_text("f" * 64 + "\n")
    dlq_file.write_text(base64.b64encode(bytes(range(32))).decode() + "\n")
    monkeypatch.delenv("SAMBAND_PSEUDONYM_KEY")
    monkeypatch.delenv("SAMBAND_DLQ_KEY")
    monkeypatch.setenv("SAMBAND_PSEUDONYM_KEY_FILE", str(pseudonym_file))
    monkeypatch.setenv("SAMBAND_DLQ_KEY_FILE", str(dlq_file))
    settings = Settings()
    assert settings.pseudonym_key == "f" * 64
    require_keys(settings)  # real keys: no development shortcut needed
    assert dead_letter_key(settings) == bytes(range(32))

    missing = tmp_path / "absent"
    result = run_cli("worker", SAMBAND_PSEUDONYM_KEY="", SAMBAND_PSEUDONYM_KEY_FILE=str(missing))
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"samband: SAMBAND_PSEUDONYM_KEY_FILE: cannot read {missing} (No such file or directory)"
    )
