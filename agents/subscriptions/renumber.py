"""Reform day for subscriptions: which ones are scoped to a kommunenummer a reform retired, and
the scope each should have now (`samband subscriptions renumber`, docs/reform-day.md).

A code renumbered, or merged into a new one, is replaced by today's code: the subscription follows
its kommune. A merger widens it to the kommuner merged in, which the plan says. A code that was
split is left as it is: which part a subscription may follow is the operator's decision, and
following every part would hand it persons it has no right to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.subscriptions.model import Subscription
from schemas.kommuner import kommuner, merged_with, renumberings, successors


@dataclass
class Renumbered:
    subscription: Subscription  # as it is now
    kommuner: list[str]  # its scope after the plan
    steps: list[str] = field(default_factory=list)  # one line per retired code replaced
    widened: list[str] = field(default_factory=list)  # kommuner merged in that it did not cover
    split: list[str] = field(default_factory=list)  # retired codes left as they are: split, choose by hand

    @property
    def changed(self) -> bool:
        return self.kommuner != list(self.subscription.kommuner)

    def renumbered(self) -> Subscription:
        return Subscription.model_validate({**self.subscription.model_dump(mode="json"), "kommuner": self.kommuner})


def plan(subscriptions: list[Subscription]) -> list[Renumbered]:
    """The subscriptions scoped to a retired code, each with its new scope, in id order."""
    return [p for sub in sorted(subscriptions, key=lambda s: s.id) if (p := _plan_one(sub)) is not None]


def _plan_one(sub: Subscription) -> Renumbered | None:
    if sub.kommuner == "all" or not any(code in renumberings() for code in sub.kommuner):
        return None
    result = Renumbered(sub, [])
    scope = set(sub.kommuner)
    for code in sub.kommuner:
        change = renumberings().get(code)
        today = successors(code)
        if change is None:
            result.kommuner.append(code)
        elif len(today) > 1:
            result.kommuner.append(code)
            result.split.append(
                f"{code} {change.old_name}: became {_names(today)}; left as it is: choose its kommuner by hand"
            )
        else:
            result.kommuner.append(today[0])
            result.steps.append(f"{code} {change.old_name} -> {_names(today)} (from {change.valid_from.isoformat()})")
            result.widened += [f"{old} {renumberings()[old].old_name}" for old in _merged_in(code) if old not in scope]
    result.kommuner = list(dict.fromkeys(result.kommuner))
    return result


def _merged_in(code: str) -> list[str]:
    """The retired codes merged with `code` on the way to today's code, at any of its reforms."""
    found: list[str] = []
    while (change := renumberings().get(code)) is not None and len(change.new) == 1:
        found += merged_with(change)
        code = change.new[0]
    return found


def _names(codes: tuple[str, ...]) -> str:
    return " and ".join(f"{code} {kommuner()[code].name}" for code in codes)
