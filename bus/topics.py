"""The table of every topic the bus owns, and the one way to create topics.

    names = topic_names("samband")            # names.events == "samband-events"
    await LEDGER.ensure(bootstrap, "samband")  # with the table's partitions and configs

Every name is `<app id>-<suffix>` (SAMBAND_APP_ID, default `samband`). `TABLE` is the single
source for creating the topics, for `samband topics --table` and for the topic table in
docs/architecture.md (written by `python -m bus.topics --write-doc`; a test fails when the doc
is stale). A topic with `partitions=None` has the bus's partition count (`Layout`, SAMBAND_PARTITIONS):
it is keyed by person (or partitioned like a topic that is), so a person's records share one
partition number in every stage. A bus whose topics disagree with the layout stops (`TopicLayoutError`). A subscriber's own Kafka topic is not the bus's and is not in the table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from bus import clients

DEFAULT_PARTITIONS = 12  # SAMBAND_PARTITIONS: the partition count of every topic keyed by person


LAYOUT_VARIABLES = ("SAMBAND_PARTITIONS", "SAMBAND_REPLICATION_FACTOR", "SAMBAND_MIN_INSYNC_REPLICAS")


class TopicLayoutError(Exception):
    """The layout settings are malformed, or the cluster's topics disagree with them; the message says what to do."""


def _env_count(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise TopicLayoutError(f"{name}: expected a whole number of at least 1, got {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class Layout:
    """How the bus lays out its topics on the cluster (docs/deploy.md, "Topics").

    `partitions` is every person-keyed topic's count. `replication` and `min_insync` left None
    follow the cluster's size when a topic is made: three replicas and two in sync on three or more
    brokers; on fewer, a replica on each and one in sync. Producers write with acks=all, so a write
    is acknowledged once `min_insync` replicas have it.
    """

    partitions: int = DEFAULT_PARTITIONS
    replication: int | None = None
    min_insync: int | None = None

    @classmethod
    def from_env(cls) -> Layout:
        """From SAMBAND_PARTITIONS, SAMBAND_REPLICATION_FACTOR and SAMBAND_MIN_INSYNC_REPLICAS."""
        layout = cls(
            _env_count("SAMBAND_PARTITIONS", DEFAULT_PARTITIONS) or DEFAULT_PARTITIONS,
            _env_count("SAMBAND_REPLICATION_FACTOR", None),
            _env_count("SAMBAND_MIN_INSYNC_REPLICAS", None),
        )
        if layout.replication and layout.min_insync and layout.min_insync > layout.replication:
            raise TopicLayoutError(
                f"SAMBAND_MIN_INSYNC_REPLICAS={layout.min_insync} is more than SAMBAND_REPLICATION_FACTOR="
                f"{layout.replication}: no write could be acknowledged; lower it or raise the replication"
            )
        return layout

    def replicas(self, brokers: int, cluster_default: int = 0) -> tuple[int, int]:
        """(replication factor, min.insync.replicas) of a topic on a cluster with `brokers` brokers up
        and the broker setting default.replication.factor `cluster_default` (0: not known). The
        larger of the two counts: a broker that is down for a moment makes no topic weaker."""
        replication = self.replication or min(3, max(brokers, cluster_default))
        min_insync = self.min_insync or (2 if replication >= 3 else 1)
        return replication, min(min_insync, replication)


def layout() -> Layout:
    """The layout the environment sets (read on each call: tests set it per bus)."""
    return Layout.from_env()


@dataclass(frozen=True)
class Topic:
    attr: str  # its field in TopicNames
    suffix: str  # the name after "<app id>-"
    key: str
    value: str
    writer: str  # who writes it: the owner stage
    partitions: int | None = None  # None: the bus's partition count
    cleanup: str = "delete"
    retention: str = "broker default"
    notes: str = ""

    def name(self, app_id: str) -> str:
        return f"{app_id}-{self.suffix}"

    def partition_count(self, bus_partitions: int | None = None) -> int:
        """Its own count, or the bus's (`bus_partitions`, else SAMBAND_PARTITIONS)."""
        if self.partitions is not None:
            return self.partitions
        return bus_partitions or layout().partitions

    def configs(self, retention_ms: int | None = None) -> dict[str, str]:
        """Its topic configs; `retention_ms` for a topic whose retention is a setting."""
        configs = {"cleanup.policy": self.cleanup}
        if retention_ms is not None:
            configs["retention.ms"] = str(retention_ms)
        return configs

    async def ensure(self, bootstrap: str, app_id: str) -> str:
        """Create it unless it exists; returns its name."""
        await ensure_table_topics(bootstrap, app_id, [self])
        return self.name(app_id)


PERSON = "person pseudonym"

INGEST = Topic(
    "ingest", "ingest", PERSON + " (`schemas.ingest_key.IngestKey`)",
    "one event: Confluent wire-format Avro of its catalog record, or a CloudEvents 1.0 JSON object",
    "source connectors",
    notes="the connector runtime sets the key, so one person's events keep their source's order; "
    "a program writing here directly must key with `IngestKey` too",
)  # fmt: skip
EVENTS = Topic(
    "events", "events", PERSON, "Confluent wire-format Avro of the catalog record, validated and normalised",
    "ingest", retention="`SAMBAND_EVENTS_RETENTION_DAYS` (default 7 days)",
    notes="the canonical stream; one person's events stay in order; the router adds life-stage events; "
    "its retention is how far back a backfill reaches",
)  # fmt: skip
DEADLETTER = Topic(
    "deadletter", "deadletter", "the original key",
    "the original bytes, sealed (`SDL1` + nonce + AES-256-GCM, key `SAMBAND_DLQ_KEY`)",
    "every stage and source",
    notes="reason and context in readable headers that hold no personal data; never dropped",
)  # fmt: skip
SUBSCRIPTIONS = Topic(
    "subscriptions", "subscriptions", "subscription id", "subscription JSON; a tombstone deletes",
    "subscriptions API and CLI", partitions=1, cleanup="compact", notes="every worker reads it whole and follows it",
)  # fmt: skip
AUDIT = Topic(
    "audit", "audit", "write time in ns + a random part (never repeats)",
    "one subscription write: time, who, owner, action, subscription id, outcome",
    "subscriptions API and CLI", partitions=1, cleanup="compact", notes="compaction keeps every entry; `samband audit`",
)  # fmt: skip
CONNECTOR_STATE = Topic(
    "connector_state", "connector-state", "connector instance name", "bookmark JSON", "source connectors",
    partitions=1, cleanup="compact", notes="a source's durable position",
)  # fmt: skip
INGEST_SEEN_IDS = Topic(
    "ingest_seen_ids", "ingest-seen-ids", "event id", "first-seen time", "ingest",
    cleanup="compact,delete", retention="`SAMBAND_DEDUP_RETENTION_HOURS` (default 168 h)",
    notes="ingest's deduplication state, per partition of `ingest`",
)  # fmt: skip
ROUTER_PERSONS = Topic(
    "router_persons", "router-persons", PERSON,
    "protection grade, birth date, the subscriptions that received data; for life stages the sealed "
    "identity number, kommune, stages emitted", "router", cleanup="compact",
    notes="the router's person state; delivery follows it for each person's grade now",
)  # fmt: skip
ROUTER_RECORDS = Topic(
    "router_records", "router-records", "the segment's first event id, `~` and a random suffix",
    "a segment: {event id: [subscriptions sent it]} of one batch", "router", cleanup="compact,delete",
    retention="`SAMBAND_ROUTING_RECORDS_RETENTION_DAYS` (default 400 days)",
    notes="routing records, one segment per partition and batch; kept on disk by the router (bus/store.py)",
)  # fmt: skip
ROUTER_HELD = Topic(
    "router_held", "router-held", "event id", "the corrections that arrived before it, sealed", "router",
    cleanup="compact", notes="until the event is routed or the wait passes",
)  # fmt: skip
ROUTER_BACKFILL = Topic(
    "router_backfill", "router-backfill", "`progress:<backfill id>`",
    "how far the backfill has come in this partition of `events` (start, end and next offset, the "
    "pass under way and whether it sent anything)", "router",
    cleanup="compact", notes="per partition of `events`; `samband status` sums the progress up",
)  # fmt: skip
BACKFILLS = Topic(
    "backfills", "backfills", "subscription id", "the backfill asked for: id, since, when, by whom; a tombstone cancels",
    "subscriptions API and CLI", partitions=1, cleanup="compact", notes="every router follows it (docs/backfill.md)",
)  # fmt: skip
DELIVERIES = Topic(
    "deliveries", "deliveries", "`<subscription id>/<person pseudonym>`", "delivery JSON (below)",
    "router; `samband dlq replay`",
    notes="one record per (event, entitled subscription), in the person's partition",
)  # fmt: skip
OUTCOMES = Topic(
    "outcomes", "delivery-outcomes", "`<subscription>/<person>`",
    "one failed attempt: idempotency key, status, reason, HTTP status, retry-after, time", "delivery",
    notes="the attempt log (`samband trace`, `status`), in the partition the delivery was read from",
)  # fmt: skip
PENDING = Topic(
    "pending", "delivery-pending", "`<subscription>/<person>`, or `<subscription>/~behind`",
    "a queue that waits or is retried, or where a subscription at its memory limit resumes", "delivery",
    cleanup="compact", notes="docs/delivery.md; a tombstone once empty",
)  # fmt: skip
STATUS = Topic(
    "status", "delivery-status", "subscription id", "fingerprint, verified, disabled reason, time", "delivery",
    partitions=1, cleanup="compact", notes="verification handshakes and disabled subscriptions",
)  # fmt: skip
LEDGER = Topic(
    "ledger", "delivery-ledger", "`<event id>/<subscription>`",
    "what became of the delivery: delivered, dead-lettered or held", "delivery", cleanup="compact",
    notes="in the partition the delivery was read from",
)  # fmt: skip
DISCLOSURES = Topic(
    "disclosures", "disclosures", "`<person pseudonym>/<event id>/<subscription>`",
    "one delivered event: when, to which subscription, its type and the paths of the `data` fields that left",
    "delivery", cleanup="compact,delete", retention="`SAMBAND_DISCLOSURE_RETENTION_DAYS` (default 1,095 days)",
    notes="a person's access report (`samband person report`); in the partition the delivery was read from",
)  # fmt: skip
ALERTS = Topic(
    "alerts", "alerts", "subscription id", "when its contact was last alerted", "alert watch (leader worker)",
    partitions=1, cleanup="compact",
)  # fmt: skip

TABLE: tuple[Topic, ...] = (
    INGEST, EVENTS, DEADLETTER, SUBSCRIPTIONS, AUDIT, CONNECTOR_STATE, INGEST_SEEN_IDS,
    ROUTER_PERSONS, ROUTER_RECORDS, ROUTER_HELD, ROUTER_BACKFILL, BACKFILLS, DELIVERIES, OUTCOMES, PENDING, STATUS,
    LEDGER, DISCLOSURES, ALERTS,
)  # fmt: skip


@dataclass(frozen=True)
class TopicNames:
    """The name of every topic in the table, for one app id."""

    ingest: str
    events: str
    deadletter: str
    subscriptions: str
    audit: str
    connector_state: str
    ingest_seen_ids: str
    router_persons: str
    router_records: str
    router_held: str
    router_backfill: str
    backfills: str
    deliveries: str
    outcomes: str
    pending: str
    status: str
    ledger: str
    disclosures: str
    alerts: str


def pull_topic_prefix(app_id: str) -> str:
    """Each pull subscription has a topic of its own, this prefix + its id (connectors/pull/): not
    in the table, since there is one per subscription, made by the delivery stage."""
    return f"{app_id}-pull."


def topic_names(app_id: str) -> TopicNames:
    return TopicNames(**{topic.attr: topic.name(app_id) for topic in TABLE})


async def ensure_topics(
    bootstrap: str, topics: dict[str, dict[str, str]], partitions: int, *, check: bool = False
) -> None:
    """Create the topics that do not exist yet, with `partitions` partitions, their configs, and the
    layout's replication. `check`: the bus's own topics, which must also agree with the layout if
    they exist (`TopicLayoutError`)."""
    await _create_missing(bootstrap, [(name, partitions, configs) for name, configs in topics.items()], check)


async def ensure_table_topics(
    bootstrap: str, app_id: str, topics: list[Topic], retention_ms: Mapping[str, int] | None = None
) -> None:
    """Create these rows of the table that do not exist yet, and check those that do. `retention_ms`
    (by the row's `attr`) for rows whose retention is a setting; without it they get the broker's."""
    retention = retention_ms or {}
    wanted = [(t.name(app_id), t.partition_count(), t.configs(retention.get(t.attr))) for t in topics]
    await _create_missing(bootstrap, wanted, True)


async def check_table_topics(bootstrap: str, app_id: str, topics: list[Topic]) -> None:
    """Check those of these rows of the table that exist (TopicLayoutError); make none. The stage
    that owns a topic makes it, with the configs its settings give (a retention, say)."""
    wanted = [(t.name(app_id), t.partition_count(), t.configs()) for t in topics]
    await _create_missing(bootstrap, wanted, True, create=False)


async def _create_missing(
    bootstrap: str, wanted: list[tuple[str, int, dict[str, str]]], check: bool, create: bool = True
) -> None:
    """One admin connection: create those of `wanted` (name, partitions, configs) that do not exist
    yet; with `check`, stop when one that exists has another partition count, or fewer replicas.
    Either would be silent otherwise: a person's records read from, or their state kept in, another
    partition than the one their key chose; or a cluster that loses writes with a broker."""
    admin = clients.admin(bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        live = (await admin.describe_cluster())["brokers"]
        replication, min_insync = layout().replicas(len(live), await _default_replication(admin, live))
        missing = sorted((w for w in wanted if w[0] not in existing), key=lambda w: w[0]) if create else []
        if missing:
            if replication > len(live):
                raise TopicLayoutError(
                    f"topic {missing[0][0]} needs {replication} replicas but {len(live)} broker(s) are up: start "
                    "the others, or set SAMBAND_REPLICATION_FACTOR"
                )
            new = [
                NewTopic(name, count, replication, topic_configs={"min.insync.replicas": str(min_insync), **configs})
                for name, count, configs in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was quicker
                await admin.create_topics(new)
        present = {name: (count, configs) for name, count, configs in wanted if name in existing}
        if check and present:
            for found in await _described(admin, sorted(present)):
                _agrees(found["topic"], found["partitions"], present[found["topic"]][0], replication)
            resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in sorted(present)]
            for response in await admin.describe_configs(resources):
                for error, _, _, name, entries in response.resources:
                    if error == 0:  # else this principal may not read configs (a connector): the worker checks
                        found = {entry[0]: entry[1] for entry in entries}
                        _configs_agree(name, found, present[name][1], min_insync)
    finally:
        await admin.close()


async def _described(admin, names: list[str], timeout: float = 30.0) -> list[dict]:
    """The topics as the cluster describes them. A topic another worker made a moment ago can be
    listed by one broker while the broker answering this describes it with no partitions yet (seen
    with three workers starting at once on the three-node cluster): such a topic is asked about
    again until its partitions show, for `timeout` seconds at most."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        described = await admin.describe_topics(names)
        if all(found["partitions"] for found in described) or loop.time() > deadline:
            return described
        await asyncio.sleep(0.2)  # poll interval while the topic's metadata spreads (bounded by the deadline)


async def _default_replication(admin, live: list[dict]) -> int:
    """The cluster's default.replication.factor, or 0 when this principal may not read it."""
    resource = ConfigResource(ConfigResourceType.BROKER, str(live[0]["node_id"])) if live else None
    if resource is None:
        return 0
    try:
        responses = await admin.describe_configs([resource])
    except KafkaError:
        return 0
    for response in responses:
        for error, _, _, _, entries in response.resources:
            if error == 0:
                return int({entry[0]: entry[1] for entry in entries}.get("default.replication.factor") or 0)
    return 0


def _agrees(name: str, partitions: list[dict], expected: int, replication: int) -> None:
    if not partitions:
        raise TopicLayoutError(
            f"topic {name} is listed, but the cluster describes none of its partitions: it is being made or "
            "deleted; start again once it has settled"
        )
    if len(partitions) != expected:
        raise TopicLayoutError(
            f"topic {name} has {len(partitions)} partitions but the bus needs {expected} (SAMBAND_PARTITIONS, "
            "or the topic table): changing the count moves persons between partitions; set SAMBAND_PARTITIONS to "
            'the count the topics have, or follow docs/deploy.md, "Adding partitions"'
        )
    least = min(len(p["replicas"]) for p in partitions)
    if least < replication:
        raise TopicLayoutError(
            f"topic {name} has {least} replica(s) but the bus needs {replication}: raise its replication "
            "(kafka-reassign-partitions; on Strimzi, the KafkaTopic's replicas with Cruise Control), or, if fewer "
            f'were meant, set SAMBAND_REPLICATION_FACTOR={least} (docs/deploy.md, "Topics")'
        )


def _configs_agree(name: str, found: dict[str, str], wanted: dict[str, str], min_insync: int) -> None:
    """A topic made by someone else with settings that would lose what the bus relies on: compaction
    where every record counts (or none where the latest is the state), a shorter retention than a
    setting asks for, or fewer replicas in sync."""
    cleanup = wanted.get("cleanup.policy", "delete")
    if sorted(found.get("cleanup.policy", "delete").split(",")) != sorted(cleanup.split(",")):
        raise TopicLayoutError(
            f"topic {name} has cleanup.policy={found.get('cleanup.policy')} but the bus needs {cleanup}: "
            "set it with kafka-configs (docs/state.md shows how); delete the topic only if it holds nothing "
            "the bus needs, and let the bus make it"
        )
    wanted_ms, found_ms = int(wanted.get("retention.ms", -1)), int(found.get("retention.ms", -1))
    if wanted_ms != -1 and found_ms != -1 and found_ms < wanted_ms:
        raise TopicLayoutError(
            f"topic {name} keeps records {found_ms / 86_400_000:g} days (retention.ms={found_ms}) but the bus's "
            f"settings need {wanted_ms / 86_400_000:g} days: raise its retention.ms with kafka-configs "
            "(docs/configuration.md names the setting of each topic)"
        )
    if int(found.get("min.insync.replicas", min_insync)) < min_insync:
        raise TopicLayoutError(
            f"topic {name} has min.insync.replicas={found['min.insync.replicas']} but the bus needs {min_insync}: "
            "set it with kafka-configs, or set SAMBAND_MIN_INSYNC_REPLICAS"
        )


def markdown_table() -> str:
    """The table as docs/architecture.md shows it (`samband` as the app id)."""
    rows = [
        "| topic | key | value | partitions | cleanup | retention | written by | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in TABLE:
        partitions = f"`SAMBAND_PARTITIONS` ({DEFAULT_PARTITIONS})" if t.partitions is None else str(t.partitions)
        cells = [f"`{t.name('samband')}`", t.key, t.value, partitions, t.cleanup, t.retention, t.writer, t.notes]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
_MARKED = re.compile(
    r"(<!-- topic table: generated by `python -m bus.topics --write-doc` -->\n)(.*?)(<!-- end of topic table -->)", re.S
)


def doc_with_table(doc: str) -> str:
    """`doc` with the generated table between its markers."""
    if not _MARKED.search(doc):
        raise ValueError("docs/architecture.md has no topic table markers")
    return _MARKED.sub(lambda m: m.group(1) + markdown_table() + m.group(3), doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bus.topics", description=__doc__.splitlines()[0])
    parser.add_argument("--write-doc", action="store_true", help="write the table into docs/architecture.md")
    args = parser.parse_args(argv)
    if args.write_doc:
        DOC.write_text(doc_with_table(DOC.read_text()))
    else:
        sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
