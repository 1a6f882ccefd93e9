"""The topic table (bus/topics.py) is the one source: the names, the doc's table, `samband topics --table`."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields

from bus.topics import DOC, TABLE, TopicNames, doc_with_table, markdown_table, topic_names


def test_the_architecture_doc_shows_the_table_as_the_code_has_it():
    doc = DOC.read_text()
    assert doc_with_table(doc) == doc, "docs/architecture.md is stale: run `python -m bus.topics --write-doc`"


def test_the_doc_check_sees_a_stale_table():
    stale = DOC.read_text().replace("`samband-delivery-ledger`", "`samband-ledger-of-old`")
    assert doc_with_table(stale) != stale
    assert "`samband-delivery-ledger`" in markdown_table()


def test_every_topic_has_one_name_field_and_a_unique_name():
    assert [f.name for f in fields(TopicNames)] == [t.attr for t in TABLE]
    names = topic_names("kommune-x")
    assert len({getattr(names, t.attr) for t in TABLE}) == len(TABLE)
    assert names.ledger == "kommune-x-delivery-ledger"
    assert all(getattr(names, t.attr).startswith("kommune-x-") for t in TABLE)


def test_samband_topics_table_lists_every_topic_for_the_app_id_without_a_broker():
    env = {"SAMBAND_APP_ID": "kommune-y", "SAMBAND_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-m", "agents.cli", "topics", "--table", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["topics"]
    assert [row["name"] for row in rows] == [t.name("kommune-y") for t in TABLE]
    ledger = next(row for row in rows if row["name"] == "kommune-y-delivery-ledger")
    assert (ledger["partitions"], ledger["cleanup"], ledger["written_by"]) == (12, "compact", "delivery")

    env["SAMBAND_PARTITIONS"] = "24"
    done = subprocess.run(
        [sys.executable, "-m", "agents.cli", "topics", "--table", "--json"], env=env, capture_output=True, text=True
    )
    counts = {row["name"]: row["partitions"] for row in json.loads(done.stdout)["topics"]}
    assert counts["kommune-y-delivery-ledger"] == 24 and counts["kommune-y-subscriptions"] == 1
