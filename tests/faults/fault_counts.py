"""What each fault scenario counts (issue 14), from its receivers: one line per scenario.

    sent          deliveries the bus accepted to make (expected webhook-ids, every subscriber)
    delivered     of those, how many reached their subscriber at least once
    lost          sent but never delivered
    duplicated    arrivals of a webhook-id that had arrived before (at-least-once repeats)
    out_of_order  first arrivals of a person's event after a later one of theirs had arrived
    behind        repeats that arrived after a later event of the person: what a worker that
                  lost its work re-sends from its last commit (same webhook-id, so a subscriber
                  that keeps the ids it has taken skips them); 0 where nothing was lost
    wrong         arrivals that were not sent to that subscriber (an unknown webhook-id)

The line is printed (`make faults` runs with -s; docs/reliability.md keeps the table) and, when
SAMBAND_FAULT_REPORT names a file, appended to it as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass

Position = Callable[[object], tuple[str, int]]  # an arrival -> (person, the event's place in their sequence)


@dataclass(frozen=True)
class FaultCounts:
    scenario: str
    sent: int
    delivered: int
    lost: int
    duplicated: int
    out_of_order: int
    behind: int
    wrong: int

    def report(self) -> FaultCounts:
        print(f"\nFAULT {self.scenario}: " + ", ".join(f"{k}={v}" for k, v in asdict(self).items() if k != "scenario"))
        if path := os.environ.get("SAMBAND_FAULT_REPORT"):
            with open(path, "a") as report:
                report.write(json.dumps(asdict(self)) + "\n")
        return self


def count(scenario: str, sent: dict[str, set[str]], arrivals: dict[str, list], position: Position) -> FaultCounts:
    """`sent`: subscriber -> webhook-ids it should get; `arrivals`: subscriber -> what reached it, in order."""
    delivered = duplicated = out_of_order = behind = wrong = 0
    for sub, expected in sent.items():
        seen: set[str] = set()
        latest: dict[str, int] = {}
        for arrival in arrivals.get(sub, []):
            if arrival.webhook_id not in expected:
                wrong += 1
                continue
            repeat = arrival.webhook_id in seen
            seen.add(arrival.webhook_id)
            person, place = position(arrival)
            if place < latest.get(person, place):
                behind += repeat
                out_of_order += not repeat
            duplicated += repeat
            latest[person] = max(place, latest.get(person, place))
        delivered += len(seen)
    total = sum(map(len, sent.values()))
    return FaultCounts(scenario, total, delivered, total - delivered, duplicated, out_of_order, behind, wrong)


def subject_and_seq(arrival) -> tuple[str, int]:
    """The delivery bus's test events: the person is the CloudEvent's subject, the place its data's `seq`."""
    return arrival.event["subject"], arrival.event.get_data()["seq"]
