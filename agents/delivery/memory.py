"""How many pending entries the delivery stage holds in memory, per subscription and in all.

A subscription is *full* when it holds `per_subscription` entries
(SAMBAND_DELIVERY_MEMORY_PER_SUBSCRIPTION), or when the worker process holds `per_worker` in all
(SAMBAND_DELIVERY_MEMORY_PER_WORKER) and the subscription holds at least its *share*: `per_worker`
divided among the subscriptions that hold any. A full subscription leaves its further records in
the deliveries topic, to take them again when it has room (queues.py). So when many subscribers are
slow at once (one supplier's systems in many kommuner, say), those holding most give way first, and
a subscription that holds little (a healthy one, whose entries go out at once) goes on taking its
records until it too holds its share. Each subscription can reach its share while the total is at
the limit, so the process holds at most about twice `per_worker`.

A subscription has *room* again, and its backlog is read, once it holds at most half its own limit,
and the process holds at most half its limit or the subscription at most half its share.
"""

from __future__ import annotations

import sys


class HeldInMemory:
    def __init__(self, per_subscription: int, per_worker: int | None = None):
        self.per_subscription = per_subscription
        self.per_worker = per_worker if per_worker is not None else sys.maxsize
        self._held: dict[str, int] = {}  # subscription -> entries; a 0 stays until `forget_idle`
        self.total = 0
        self._holders = 0  # subscriptions holding at least one entry

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
        subscription room again: `sub`, or any, once the process is down to half its limit."""
        before = self._held.get(sub, 0)
        after = self._held[sub] = before + entries
        total_before, self.total = self.total, self.total + entries
        self._holders += (after > 0) - (before > 0)
        if entries >= 0:
            return False
        return (
            before > self.per_subscription // 2 >= after
            or total_before > self.per_worker // 2 >= self.total
            or (self.total > self.per_worker // 2 and before > self.share() // 2 >= after)
        )

    def share(self) -> int:
        return max(1, self.per_worker // max(1, self._holders))

    def full(self, sub: str) -> bool:
        held = self[sub]
        return held >= self.per_subscription or (self.total >= self.per_worker and held >= self.share())

    def has_room(self, sub: str) -> bool:
        held = self[sub]
        return held <= self.per_subscription // 2 and (self.total <= self.per_worker // 2 or held <= self.share() // 2)
