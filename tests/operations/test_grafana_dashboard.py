"""The Grafana dashboard queries only metrics that agents/metrics.py exposes, and shows every one of the
bus's own (`samband_*`; of prometheus_client's `process_*`, the resident memory)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from agents import metrics

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "samband-dashboard.json"
SERIES_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
METRIC_NAME = re.compile(r"\b(?:samband|process)_[a-z0-9_]+")


def _exposed_series() -> dict[str, str]:
    """Series name -> metric family name, for every metric /metrics serves (each family's header
    is written even before it has a series)."""
    return {
        family.name + suffix: family.name
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for suffix in SERIES_SUFFIXES[family.type]
    }


def _queries(dashboard: dict) -> list[str]:
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    variables = [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs + variables


def test_every_queried_metric_exists_and_every_metric_is_shown():
    dashboard = json.loads(DASHBOARD.read_text())
    exposed = _exposed_series()
    queried = {name for query in _queries(dashboard) for name in METRIC_NAME.findall(query)}

    assert queried - exposed.keys() == set()
    own = {family for family in exposed.values() if family.startswith("samband_")}
    shown = own | ({"process_resident_memory_bytes"} if sys.platform == "linux" else set())  # (read from /proc)
    assert {exposed[name] for name in queried} >= shown


def test_every_panel_queries_a_bus_metric_through_the_chosen_data_source():
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert METRIC_NAME.search(target["expr"]), panel["title"]
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
