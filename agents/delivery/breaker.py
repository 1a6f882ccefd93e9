"""A circuit breaker per subscription: a failing endpoint is probed, not hammered.

Each (subscription, person) queue retries its head on its own schedule, so an endpoint that
answers 500 to everyone would get one request per person per retry step. After `failures`
transient failures in a row (timeouts, refused connections, 5xx, 429: outcome `retry`; one
answer to a batch of events is one attempt) the
subscription's breaker opens: its heads wait, and one of them goes out every `probe_interval`
seconds as a probe. The first answer that is not a transient failure (a delivery, or a 4xx the
subscriber chose to give) closes it, and every waiting head goes out again. Nothing is lost:
the heads keep their place, and only a probe counts an attempt.

Pure bookkeeping; the dispatcher (agents/delivery/dispatcher.py) holds and releases the heads
and saves the state in the subscription's delivery status, where `samband status` and the
dashboard show it as `suspended`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from connectors.api import Outcome

OPENED, CLOSED = "opened", "closed"


@dataclass
class _Circuit:
    streak: int = 0  # transient failures in a row
    open_since: float | None = None
    next_probe: float = 0.0
    probing: bool = False


class Breaker:
    def __init__(self, failures: int, probe_interval: float, clock: Callable[[], float] = time.time):
        self.failures = failures
        self.probe_interval = probe_interval
        self.clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def record(self, sub: str, outcome: Outcome) -> str | None:
        """Take in an attempt's outcome; OPENED or CLOSED when it changed the circuit, else None."""
        circuit = self._circuits.setdefault(sub, _Circuit())
        circuit.probing = False
        if outcome.status != "retry":  # the endpoint answered as it meant to
            was_open = circuit.open_since is not None
            self._circuits.pop(sub, None)
            return CLOSED if was_open else None
        circuit.streak += 1
        circuit.next_probe = self.clock() + self.probe_interval
        if circuit.open_since is None and circuit.streak >= self.failures:
            circuit.open_since = self.clock()
            return OPENED
        return None

    def open(self, sub: str, since: float) -> None:
        """Open at once (a worker starting finds the subscription suspended in its status): probe first."""
        self._circuits[sub] = _Circuit(self.failures, since, self.clock())

    def forget(self, sub: str) -> None:
        self._circuits.pop(sub, None)

    def is_open(self, sub: str) -> bool:
        circuit = self._circuits.get(sub)
        return circuit is not None and circuit.open_since is not None

    def take_probe(self, sub: str) -> bool:
        """Whether a probe may go out now; if so, the circuit waits for its outcome."""
        circuit = self._circuits.get(sub)
        if circuit is None or circuit.open_since is None or circuit.probing or self.clock() < circuit.next_probe:
            return False
        circuit.probing = True
        return True

    def cancel_probe(self, sub: str) -> None:
        """The probe taken will bring no outcome (it was not sent, or its lane closed under it)."""
        if (circuit := self._circuits.get(sub)) is not None:
            circuit.probing = False

    def next_probe(self, subs: Iterable[str]) -> float | None:
        """When the earliest open circuit of `subs` (those with heads waiting) may probe again; None when
        none of them can, so that nothing waits for a probe that has nothing to send."""
        circuits = (self._circuits.get(sub) for sub in subs)
        times = [c.next_probe for c in circuits if c is not None and c.open_since is not None and not c.probing]
        return min(times, default=None)
