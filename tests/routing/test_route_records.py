"""Whom a correction follows once routing records expire (issue 17, item 1): the router's state, no broker."""

from __future__ import annotations

import orjson

from agents.config import Settings
from agents.routing.backfill import SENT
from agents.routing.index import RoutingIndex
from agents.routing.stage import Route
from bus.topics import topic_names


def test_a_correction_of_an_event_whose_live_record_expired_follows_no_backfill_either(tmp_path):
    """A backfill's `sent:` entry outlives the live record: were it followed alone, the correction
    would reach the backfilled subscription and not the systems that got the event live."""
    route = Route(Settings(data_dir=str(tmp_path)), topic_names("records-test"), RoutingIndex())
    try:
        for state in route.states:
            state.partitions[0] = {} if state.disk is None else state.disk.table(0, state.encode, state.decode)
        route.backfill_state.set(0, SENT + "event-both", orjson.dumps(["late-system"]))
        route.backfill_state.set(0, SENT + "event-expired", orjson.dumps(["late-system"]))
        route.records.set(0, "event-both", ("skole", "sfo"))
        route.records.set(0, "event-expired", ("skole",))
        route.records.partitions[0]["event-expired"] = (0, ("skole",))  # set in 1970: past any retention
        assert route._recipients(0, "event-both") == ("late-system", "sfo", "skole")
        assert route._recipients(0, "event-expired") is None  # unknown: held, then dead-lettered
        assert route._recipients(0, "event-never") is None
    finally:
        for state in route.states:
            state.close()
