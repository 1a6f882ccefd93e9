"""The breaker's rules without a broker (agents/delivery/breaker.py); the whole behaviour, through a
worker and a receiver, is in test_circuit_breaker.py."""

from __future__ import annotations

from agents.delivery.breaker import CLOSED, OPENED, Breaker
from connectors.api import Outcome

FAIL, OK, REFUSED = Outcome.retry("http.500"), Outcome.delivered(), Outcome.rejected("delivery.rejected")


def test_it_opens_after_the_failures_in_a_row_and_any_real_answer_closes_it():
    now = [100.0]
    breaker = Breaker(failures=3, probe_interval=10, clock=lambda: now[0])
    assert [breaker.record("s", FAIL) for _ in range(2)] == [None, None]
    assert breaker.record("s", OK) is None and not breaker.is_open("s")  # the streak starts again
    assert [breaker.record("s", FAIL) for _ in range(3)] == [None, None, OPENED]
    assert breaker.is_open("s") and not breaker.is_open("other")
    assert breaker.record("s", REFUSED) == CLOSED  # a 4xx is the subscriber's answer, not an outage
    assert not breaker.is_open("s")


def test_one_probe_per_interval_while_open():
    now = [100.0]
    breaker = Breaker(failures=1, probe_interval=10, clock=lambda: now[0])
    assert breaker.record("s", FAIL) == OPENED
    assert not breaker.take_probe("s") and breaker.next_probe(["s"]) == 110.0
    now[0] = 110.0
    assert breaker.take_probe("s") and not breaker.take_probe("s")  # one at a time
    assert breaker.record("s", FAIL) is None and breaker.next_probe(["s"]) == 120.0
    now[0] = 120.0
    assert breaker.take_probe("s") and breaker.record("s", OK) == CLOSED


def test_a_subscription_found_suspended_at_start_probes_at_once():
    breaker = Breaker(failures=20, probe_interval=30, clock=lambda: 500.0)
    breaker.open("s", since=400.0)
    assert breaker.is_open("s") and breaker.take_probe("s")


def test_only_the_subscriptions_named_count_for_the_next_probe():
    now = [100.0]
    breaker = Breaker(failures=1, probe_interval=10, clock=lambda: now[0])
    breaker.record("s", FAIL)
    assert breaker.next_probe([]) is None  # nothing waits: nothing to wake up for
    assert breaker.next_probe(["other", "s"]) == 110.0
    now[0] = 110.0
    assert breaker.take_probe("s") and breaker.next_probe(["s"]) is None  # its probe is on its way
