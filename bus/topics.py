"""The table of every topic the bus owns, and the one way to create topics.

    names = topic_names("samband")            # names.events == "samband-events"
    await LEDGER.ensure(bootstrap, "samband")  # with the table's partitions and configs

Every name is `<app id>-<suffix>` (SAMBAND_APP_ID, default `samband`). `TABLE` is the single
source for creating the topics, for `samband topics --table` and for the topic table in
docs/architecture.md (written by `python -m bus.topics --write-doc`; a test fails when the doc
is stale). A topic with `partitions=None` has the bus's partition count: it is keyed by person
(or partitioned like a topic that is), so a person's records share one partition number in
every stage. A subscriber's own Kafka topic is not the bus's and is not in the table.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from bus import clients

BUS_PARTITIONS = 4  # the partition count of every topic keyed by person


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

    def partition_count(self, bus_partitions: int = BUS_PARTITIONS) -> int:
        return bus_partitions if self.partitions is None else self.partitions

    def configs(self, retention_ms: int | None = None) -> dict[str, str]:
        """Its topic configs; `retention_ms` for a topic whose retention is a setting."""
        configs = {"cleanup.policy": self.cleanup}
        if retention_ms is not None:
            configs["retention.ms"] = str(retention_ms)
        return configs

    async def ensure(self, bootstrap: str, app_id: str, bus_partitions: int = BUS_PARTITIONS) -> str:
        """Create it unless it exists; returns its name."""
        await ensure_table_topics(bootstrap, app_id, [self], bus_partitions)
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
    "ingest", notes="the canonical stream; one person's events stay in order; the router adds life-stage events",
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
    "router_records", "router-records", "the segment's first event id",
    "a segment: {event id: [subscriptions sent it]} of one batch", "router", cleanup="compact",
    notes="routing records, one segment per partition and batch",
)  # fmt: skip
ROUTER_HELD = Topic(
    "router_held", "router-held", "event id", "the corrections that arrived before it, sealed", "router",
    cleanup="compact", notes="until the event is routed or the wait passes",
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
    ROUTER_PERSONS, ROUTER_RECORDS, ROUTER_HELD, DELIVERIES, OUTCOMES, PENDING, STATUS, LEDGER, DISCLOSURES, ALERTS,
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


async def ensure_topics(bootstrap: str, topics: dict[str, dict[str, str]], partitions: int) -> None:
    """Create the topics that do not exist yet, with `partitions` partitions and their configs."""
    await _create_missing(
        bootstrap, [NewTopic(name, partitions, 1, topic_configs=configs) for name, configs in topics.items()]
    )


async def ensure_table_topics(
    bootstrap: str, app_id: str, topics: list[Topic], bus_partitions: int = BUS_PARTITIONS
) -> None:
    """Create these rows of the table that do not exist yet, each with its own partitions and configs."""
    await _create_missing(
        bootstrap,
        [NewTopic(t.name(app_id), t.partition_count(bus_partitions), 1, topic_configs=t.configs()) for t in topics],
    )


async def _create_missing(bootstrap: str, wanted: list[NewTopic]) -> None:
    """One admin connection: create those of `wanted` that do not exist yet."""
    admin = clients.admin(bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = sorted((t for t in wanted if t.name not in existing), key=lambda t: t.name)
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was quicker
                await admin.create_topics(missing)
    finally:
        await admin.close()


def markdown_table() -> str:
    """The table as docs/architecture.md shows it (`samband` as the app id)."""
    rows = [
        "| topic | key | value | partitions | cleanup | retention | written by | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in TABLE:
        partitions = "the bus's (4)" if t.partitions is None else str(t.partitions)
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
