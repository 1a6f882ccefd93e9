"""Reform day for subscriptions: which ones are scoped to a kommunenummer a reform retired, and
the scope each should have now (`samband subscriptions renumber`, docs/reform-day.md).

A code renumbered, or merged into a new one, is replaced by today's code: the subscription follows
its kommune. A merger widens it to the kommuner merged in, which the plan says. A code that was
split is left as it is: which part a subscription may follow is the operator's decision, and
following every part would hand it persons it has no right to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.subscriptions.delivery_target import AS_WRITTEN
from agents.subscriptions.model import Subscription
from schemas.kommuner import is_split, kommuner, lineage, merged_with, renumberings, successors


@dataclass
class Rescoped:
    subscription: Subscription  # as it is now
    kommuner: list[str]  # its scope after the plan
    steps: list[str] = field(default_factory=list)  # one line per retired code replaced
    widened: list[str] = field(default_factory=list)  # kommuner merged in that it did not cover
    split: list[str] = field(default_factory=list)  # retired codes left as they are: split, choose by hand

    @property
    def changed(self) -> bool:
        return self.kommuner != list(self.subscription.kommuner)

    def updated(self) -> Subscription:
        return Subscription.model_validate(
            {**self.subscription.model_dump(mode="json"), "kommuner": self.kommuner}, context=AS_WRITTEN
        )


def plan(subscriptions: list[Subscription]) -> list[Rescoped]:
    """The subscriptions scoped to a retired code, each with its new scope, in id order."""
    return [p for sub in sorted(subscriptions, key=lambda s: s.id) if (p := _plan_one(sub)) is not None]


def _plan_one(sub: Subscription) -> Rescoped | None:
    if sub.kommuner == "all" or not any(code in renumberings() for code in sub.kommuner):
        return None
    result = Rescoped(sub, [])
    scope = set(sub.kommuner)
    for code in sub.kommuner:
        if code not in renumberings():
            result.kommuner.append(code)
        elif is_split(code):
            result.kommuner.append(code)
            result.split.append(_history(code))
        else:
            result.kommuner.append(successors(code)[0])
            result.steps.append(_history(code))
            result.widened += [f"{old} {renumberings()[old].old_name}" for old in _merged_in(code) if old not in scope]
    result.kommuner = list(dict.fromkeys(result.kommuner))
    return result


def _history(code: str) -> str:
    """What the reforms made of `code`: "0213 Ski -> 3020 Nordre Follo (2020-01-01) -> 3207 Nordre
    Follo (2024-01-01)", or, when it was split, "... split into 1508 Ålesund and 1580 Haram (2024-01-01)"."""
    text = f"{code} {renumberings()[code].old_name}"
    while (change := renumberings().get(code)) is not None:
        day = change.valid_from.isoformat()
        if len(change.new) > 1:
            return f"{text}, split into {' and '.join(f'{c} {_name(c)}' for c in change.new)} ({day})"
        code = change.new[0]
        text += f" -> {code} {_name(code)} ({day})"
    return text


def _name(code: str) -> str:
    kommune = kommuner().get(code)
    return kommune.name if kommune is not None else renumberings()[code].old_name


def _merged_in(code: str) -> list[str]:
    """The retired codes merged with `code` on the way to today's code, at any of its reforms."""
    found: list[str] = []
    for earlier in lineage(code)[:-1]:
        found += merged_with(renumberings()[earlier])
    return found
