"""The demo's delivery-gap count (its leak check is the privacy scan: tests/privacy/)."""

from __future__ import annotations

from agents.demo.checks import Gap, delivery_gaps


def test_delivery_gaps_separate_delivered_dead_lettered_pending_and_unexpected():
    routed = {"a": {"e1", "e2", "e3", "e4"}, "b": {"e5"}}
    delivered = {"a": {"e1", "e9"}, "b": {"e5"}}
    dead = {"a": {"e2"}}
    assert delivery_gaps(routed, delivered, dead) == {
        "a": Gap("a", routed=4, delivered=1, dead_lettered=1, pending=2, unexpected=1),
        "b": Gap("b", routed=1, delivered=1, dead_lettered=0, pending=0, unexpected=0),
    }
