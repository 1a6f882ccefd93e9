"""How many pending entries the delivery stage holds in memory, per subscription and in all.

A subscription is *full* when it holds `per_subscription` entries
(SAMBAND_DELIVERY_MEMORY_PER_SUBSCRIPTION). One that is *waiting* (it takes no deliveries now:
paused, unverified, disabled, outside its delivery window, or suspended by its breaker) is full
too once the worker process holds `per_worker` entries in all (SAMBAND_DELIVERY_MEMORY_PER_WORKER)
and it holds one at least: one each, so a suspended subscription always has a head to probe its
endpoint with. A full subscription leaves its further records in the deliveries topic, to take
them again when it has room (queues.py). So subscribers that are down take nothing more into
memory once the process holds the limit, while a subscription taking deliveries is never held
back by what they hold: its own limit alone bounds it.

What it bounds, and what not: a subscription keeps what it took while it took deliveries (a slow
or failing subscriber before its breaker opens, one paused with a backlog), up to its own limit.
The process holds at most `per_worker`, plus that, plus one entry per waiting subscription, plus
what the subscriptions taking deliveries hold, plus purges (which never wait) and the queues a
worker takes over from another at a rebalance.

A subscription has *room* again, and its backlog is read, once it holds at most half its own
limit and, while it is waiting, holds nothing or the process holds at most half `per_worker`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class HeldInMemory:
    def __init__(self, per_subscription: int, per_worker: int | None, waiting: Callable[[str], bool]):
        self.per_subscription = per_subscription
        self.per_worker = per_worker if per_worker is not None else sys.maxsize
        self.waiting = waiting  # whether a subscription takes no deliveries now (the dispatcher knows)
        self._held: dict[str, int] = {}  # subscription -> entries; a 0 stays until `forget_idle`
        self.total = 0

    def __getitem__(self, sub: str) -> int:
        return self._held.get(sub, 0)

    def subscriptions(self) -> set[str]:
        """Every subscription counted since the last `forget_idle`, those down to 0 included."""
        return set(self._held)

    def forget_idle(self, sub: str) -> None:
        if not self._held.get(sub):
            self._held.pop(sub, None)

    def add(self, sub: str, entries: int) -> bool:
        """Count `entries` more (fewer when negative) for `sub`. True when fewer may have given a
        subscription room again: `sub` down to half its limit, or the process down to half its own."""
        before = self._held.get(sub, 0)
        after = self._held[sub] = before + entries
        total_before = self.total
        self.total += entries
        return before > self.per_subscription // 2 >= after or total_before > self.per_worker // 2 >= self.total

    def full(self, sub: str) -> bool:
        held = self._held.get(sub, 0)
        if held >= self.per_subscription:
            return True
        return self.total >= self.per_worker and held > 0 and self.waiting(sub)

    def has_room(self, sub: str) -> bool:
        held = self._held.get(sub, 0)
        if held > self.per_subscription // 2:
            return False
        return held == 0 or self.total <= self.per_worker // 2 or not self.waiting(sub)
