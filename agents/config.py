"""Settings from `SAMBAND_*` environment variables, validated once at start.

A bad value becomes one `SettingsError` line naming the variable, never a traceback.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_PSEUDONYM_KEY = "samband-development-pseudonym-key"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SAMBAND_", extra="ignore")

    # Kafka cluster to use. Empty means the local launcher's broker
    # (KAFKA_BOOTSTRAP_SERVERS, without prefix, is honoured too, see bootstrap_servers()).
    kafka_bootstrap_servers: str = ""
    app_id: str = Field("samband", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    # Where a worker keeps its local table state (RocksDB / memory).
    data_dir: str = ".samband/worker"
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)
    # /readyz answers 503 while the worker's consumer group lags more than this many records.
    ready_max_lag: int = Field(1000, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # "auto": JSON when stderr is not a terminal, readable console otherwise.
    log_format: Literal["auto", "json", "console"] = "auto"
    # External Confluent-compatible schema registry (Confluent, Karapace, Apicurio ccompat).
    # Empty: the bus serves the registry API itself, from the schema catalog.
    schema_registry_url: str = ""
    # Secret key of person pseudonyms (HMAC-SHA256, schemas/pseudonym.py): the same on every
    # worker and connector, at least 32 bytes. The default is accepted only with `development`.
    pseudonym_key: str = DEV_PSEUDONYM_KEY
    # ... or read from this file (a mounted secret), so the key is in no environment variable.
    pseudonym_key_file: str = ""
    # Bearer tokens of the HTTP API without a tenant: `token=scope1+scope2,token2=scope1`, e.g.
    # `s3cret=subscriptions:read+subscriptions:operator`. They own no subscription unless they have the
    # operator scope. Tenants' tokens are in api_tokens_file (agents/subscriptions/tokens.py).
    # Neither set: the API refuses every request.
    api_tokens: str = ""
    api_tokens_file: str = ""
    # Ingest: messages larger than this are dead-lettered as ingest.oversized.
    ingest_max_bytes: int = Field(262_144, ge=1024)
    # CloudEvents JSON written straight to the ingest topic: drop the attributes and `data` fields
    # the profile does not know instead of dead-lettering the event (as HTTP ingest's ignore_unknown).
    ingest_ignore_unknown: bool = False
    # Ingest: how long an event id is remembered for deduplication (a re-read feed page).
    dedup_retention_hours: float = Field(168.0, gt=0)
    # Router: how long a correction or annulment that arrives before the event it names is held
    # for that event; then it is dead-lettered (0: at once).
    correction_hold_seconds: float = Field(3600.0, ge=0)
    # Router, life stages (docs/life-stages.md): a development and demo shortcut. When set, the
    # life-stage clock starts at this moment (ISO 8601 with offset) when the worker starts, and runs
    # at `speed` simulated seconds per second. Never set in production: stages would go out early.
    life_stages_simulated_start: datetime | None = None
    life_stages_simulated_speed: float = Field(1.0, gt=0)
    # Delivery: a subscription's breaker opens after this many transient failures in a row, and
    # then one probe goes out per interval (agents/delivery/breaker.py).
    breaker_failures: int = Field(20, ge=1)
    breaker_probe_seconds: float = Field(30.0, gt=0)
    # A worker asked to stop (SIGTERM, SIGINT) that has not exited after this long exits as a kill
    # would: what it had not committed is read again by whoever takes its partitions.
    stop_timeout_seconds: float = Field(60.0, gt=0)
    # Router: how long a routing record (who was sent an event) is kept. A correction or annulment of
    # an event routed longer ago than this finds no record, and is dead-lettered once it has been held.
    routing_records_retention_days: float = Field(400.0, gt=0)
    # Memory of the router's on-disk state (bus/store.py) per worker: RocksDB's cache of hot entries
    # and its write buffers. The rest of the state stays on disk, under SAMBAND_DATA_DIR/state.
    state_cache_mb: int = Field(256, ge=16)
    # Seconds between two trims of each worker process's C heap, which give memory the process has
    # freed back to the system (agents/heap_trim.py); 0 (the default): never. At least 1 otherwise:
    # each trim locks the heap the event loop allocates from for as long as it runs. Off by default:
    # in a national run the trims did not lower the peak, and each held up to a quarter second.
    heap_trim_seconds: float = Field(0.0, ge=0)
    # Hours a cleanly stopped worker's state files stay good for the next worker started on the same
    # data directory, which then reads the changelogs only from where the files end (bus/store.py);
    # 0: the files are removed at every stop and each start reads the changelogs whole. Kept under
    # the changelog topics' delete.retention.ms (24 h by default): an older checkpoint could miss a
    # deletion that compaction has since removed.
    state_checkpoint_hours: float = Field(12.0, ge=0, le=20)
    # How long the events topic keeps the canonical events: how far back a backfill can reach.
    events_retention_days: float = Field(7.0, gt=0)
    # Delivery: a queue whose records have been open this long (its subscriber is slow, or one person
    # has a long queue) moves to the pending topic, so it holds back no other subscriber's commit
    # point, and a crash sends the other subscribers at most about this many seconds again.
    delivery_store_after_seconds: float = Field(2.0, gt=0)
    # Delivery: entries one subscription may hold in memory (about 9 KB each, bench/bench_delivery_memory.py). A subscription that
    # holds this many leaves its further records in the deliveries topic and reads them again when it
    # has room (agents/delivery/queues.py), so a slow or paused subscriber's backlog is not in memory.
    delivery_memory_per_subscription: int = Field(10_000, ge=2)
    # Delivery: entries a worker process holds in memory in all before a subscription that takes no
    # deliveries now (paused, unverified, suspended...) takes more than one (agents/delivery/memory.py).
    # About 9 KB an entry: 20,000 is about 180 MiB.
    delivery_memory_per_worker: int = Field(20_000, ge=2)
    # The least wait a subscription's retry schedule may set, so a subscriber is not hammered. Tests
    # lower it to run retries in milliseconds; the subscription writers and every worker apply it.
    retry_min_seconds: float = Field(1.0, gt=0)
    # Seconds before the consumer group gives up on a silent worker and moves its partitions
    # (Faust's default is 60; the broker allows 6 and up).
    broker_session_timeout: float = Field(60.0, ge=6)
    # Seconds a stage's write waits for the broker before the stage treats the broker as gone: it
    # then starts again from its last commit once the broker is back (bus/batches.py).
    broker_request_timeout: float = Field(40.0, ge=1)
    # This worker's name among the bus's workers, kept when it is started again (its pod's name, a
    # host's name when one worker runs there). Set, its consumers are static members of their groups
    # (bus/batches.py): a worker killed and started again within the session timeout takes its
    # partitions back with no rebalance, and the others go on untouched. Two live workers must never
    # share a name (agents/worker_name.py). Unset: a new member on each start.
    worker_name: str = Field("", pattern=r"^[A-Za-z0-9._-]{0,200}$")
    # `samband worker`'s processes on one host (agents/processes.py); unset: one per usable core.
    # Never more than the partition count (SAMBAND_PARTITIONS). Process i serves on web_port + i.
    worker_processes: int | None = Field(None, ge=1)
    # Records handled per stage batch, and the longest a partial batch waits.
    batch_size: int = Field(500, ge=1)
    batch_within_seconds: float = Field(0.05, gt=0)
    # Alerts to a failing subscription's contact (at most one a day each): by e-mail when
    # alert_smtp_host is set, else by POST to alert_webhook_url when set, else none.
    alert_smtp_host: str = ""
    alert_smtp_port: int = Field(25, ge=1, le=65535)
    alert_from: str = "samband@localhost"
    alert_webhook_url: str = ""
    # How often the leader worker looks for failing subscriptions.
    alert_check_interval_s: float = Field(60.0, gt=0)
    # --- Trust (docs/security.md) -------------------------------------------------------
    # Development shortcuts on: the development pseudonym and dead-letter keys are accepted.
    # Off (the default), the worker and connectors refuse to start without real keys.
    development: bool = False
    # AES-256-GCM key that encrypts every dead letter's payload: 32 bytes, base64.
    # Whoever holds it can read dead letters (`samband dlq show --reveal`) and replay them.
    dlq_key: str = ""
    # ... or read from this file (a mounted secret).
    dlq_key_file: str = ""
    # Hosts or CIDRs (comma separated) a webhook may reach over plain http:// or on a loopback,
    # private or link-local address. Empty: https only, public addresses only.
    webhook_allow_networks: str = ""
    # Folder of webhook signing secrets, one file per subscription, named by its id.
    secrets_dir: str = ""
    # Kafka subscribers get exactly one topic each: this prefix + the subscription id.
    subscriber_topic_prefix: str = Field("subscriber.", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    # `samband status` is unhealthy when a stage wrote more dead letters than this in the last
    # SAMBAND_DEAD_LETTER_WINDOW_S: `stage=N` or `stage:reason=N`, comma separated.
    dead_letter_limits: str = "source=1000,ingest=100,route=100,deliver=1000"
    dead_letter_window_s: float = Field(3600.0, gt=0)
    # The dashboard's own history (agents/web/history.py): one sample every this many seconds, kept this long.
    dashboard_sample_s: float = Field(10.0, ge=0.5)
    dashboard_history_s: float = Field(3600.0, gt=0)
    # Pull delivery (docs/delivery.md, "Pull"): how long a pull subscription's deliveries wait to be
    # fetched; a subscription polling with nothing new gets 429 within this interval; and how far
    # back any subscription may read what the router sent it.
    pull_retention_days: float = Field(7.0, gt=0)
    pull_poll_interval_s: float = Field(1.0, ge=0)
    history_days: float = Field(7.0, ge=0)
    # How long a person's access report can reach back: the retention of `<app id>-disclosures`.
    disclosure_retention_days: float = Field(1095.0, gt=0)
    # Where subscriptions of kind `files` get their batch files, one folder per subscription id.
    # Empty: files delivery is off, and a subscription asking for it is refused.
    files_outbound_dir: str = ""
    # Bytes of finished batch files a subscription's folder may hold; beyond it, files delivery
    # answers retry until the subscriber takes files away.
    files_outbound_quota_bytes: int = Field(1 << 30, ge=1 << 20)

    @model_validator(mode="after")
    def _keys_from_files(self) -> Settings:
        for key in ("pseudonym_key", "dlq_key"):
            if path := getattr(self, f"{key}_file"):
                variable = f"SAMBAND_{key.upper()}"
                if os.environ.get(variable):
                    raise ValueError(f"{variable} and {variable}_FILE are both set: keep one")
                try:
                    setattr(self, key, Path(path).read_text().strip())
                except OSError as exc:
                    raise ValueError(f"{variable}_FILE: cannot read {path} ({exc.strerror})") from None
        return self

    @field_validator("heap_trim_seconds")
    @classmethod
    def _never_or_at_least_a_second(cls, seconds: float) -> float:
        if 0 < seconds < 1:
            raise ValueError(
                f"{seconds:g} is too often: 0 (never) or at least 1 (each trim holds the event loop's heap)"
            )
        return seconds

    @field_validator("worker_name")
    @classmethod
    def _not_a_process_name(cls, name: str) -> str:
        # `<name>-p<i>` is process i's name in a worker of several processes (bus/batches.py).
        if re.search(r"-p\d+$", name):
            raise ValueError(
                f"{name!r} ends like a process's name (-p<i>): a worker of several processes names them so"
            )
        return name

    @field_validator("dead_letter_limits")
    @classmethod
    def _limits(cls, text: str) -> str:
        from agents.dead_letter_health import parse_limits

        parse_limits(text)  # ValueError names the entry
        return text

    @field_validator("subscriber_topic_prefix")
    @classmethod
    def _apart_from_bus_topics(cls, prefix: str, info: ValidationInfo) -> str:
        # Every bus topic starts with `<app id>-` (Kafka's own with `__`): a subscriber's topic
        # may neither be one of them nor be a prefix of one.
        for bus in (f"{info.data.get('app_id', 'samband')}-", "__"):
            if prefix.startswith(bus) or bus.startswith(prefix):
                raise ValueError(
                    f"must not start with {bus!r} nor be the start of it: subscriber topics would share the bus's names"
                )
        return prefix


def _env_name(loc: tuple) -> str:
    return "SAMBAND_" + "_".join(str(part) for part in loc).upper()


@cache
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # a check across settings names its variables itself
            raise SettingsError(str(first["ctx"]["error"])) from None
        raise SettingsError(f"{_env_name(first['loc'])}: {first['msg']}") from None


MIN_KEY_BYTES = 32
# Only with `development`: a key everyone can read, so dead letters are sealed but not secret.
DEV_DLQ_KEY = hashlib.sha256(b"samband-development-dead-letter-key").digest()


def require_keys(settings: Settings | None = None) -> None:
    """Refuse to run a bus process on a missing, short or development key (SettingsError), unless
    SAMBAND_DEVELOPMENT is on. With the development key a pseudonym can be reversed by anyone who
    hashes candidate identity numbers, so it is never accepted silently."""
    settings = settings or get_settings()
    dead_letter_key(settings)
    if settings.development:
        if settings.pseudonym_key == DEV_PSEUDONYM_KEY:
            import structlog

            structlog.get_logger(__name__).warning(
                "pseudonym_key_is_development_default", setting="SAMBAND_PSEUDONYM_KEY"
            )
        return
    key = settings.pseudonym_key
    if key == DEV_PSEUDONYM_KEY or len(key.encode()) < MIN_KEY_BYTES:
        raise SettingsError(
            f"SAMBAND_PSEUDONYM_KEY: set a secret key of at least {MIN_KEY_BYTES} random bytes, the same on "
            'every worker and connector, e.g. `python -c "import secrets; print(secrets.token_hex(32))"` '
            "(or SAMBAND_DEVELOPMENT=true to use the development key)"
        )


def dead_letter_key(settings: Settings | None = None) -> bytes:
    """The 32-byte AES key of the dead letters (SAMBAND_DLQ_KEY, base64); SettingsError when it is
    missing or malformed, unless SAMBAND_DEVELOPMENT allows the development key."""
    settings = settings or get_settings()
    if not settings.dlq_key and settings.development:
        return DEV_DLQ_KEY
    try:
        key = base64.b64decode(settings.dlq_key, validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise SettingsError(
            "SAMBAND_DLQ_KEY: set the dead letters' key, 32 random bytes as base64, the same on every worker and "
            'connector, e.g. `python -c "import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())"`'
            " (or SAMBAND_DEVELOPMENT=true to use the development key)"
        )
    return key


def webhook_allow_list(settings: Settings | None = None):
    """SAMBAND_WEBHOOK_ALLOW_NETWORKS as the webhook connector's AllowList; SettingsError for a bad entry."""
    from connectors.webhook.network import AllowList

    settings = settings or get_settings()
    try:
        return AllowList.parse(settings.webhook_allow_networks)
    except ValueError as exc:
        raise SettingsError(f"SAMBAND_WEBHOOK_ALLOW_NETWORKS: {exc}") from None


def bootstrap_servers(settings: Settings | None = None) -> str:
    """The Kafka cluster: SAMBAND_KAFKA_BOOTSTRAP_SERVERS, else KAFKA_BOOTSTRAP_SERVERS, else the local broker."""
    from deploy.launcher import BrokerConfig, external_bootstrap_servers

    settings = settings or get_settings()
    return settings.kafka_bootstrap_servers or external_bootstrap_servers() or BrokerConfig.from_env().bootstrap_servers
