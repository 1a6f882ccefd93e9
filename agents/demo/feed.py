"""The demo's synthetic Norway: a year of life events, appended to the Folkeregister feed
simulator at a pace that compresses the year into the first part of the run.

What the leak check needs from the generator stays here, in the demo's memory: the address
protection of every event document (the stricter of the document's `adressebeskyttelse`
and, for a protection change, the new `gradering`). Nothing of it is printed or logged.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from connectors.folkeregister.feed_format import EventDocument
from synthetic import Simulation, SyntheticConfig

LEVELS = ("ugradert", "klientadresse", "fortrolig", "strengtFortrolig", "strengtFortroligUtland")
TOKEN = "synthetic-demo-token"
TICK_SECONDS = 0.2


def protection_of(document: EventDocument) -> str:
    levels = [document.adressebeskyttelse, document.opplysninger.get("gradering") or "ugradert"]
    return max(levels, key=lambda level: LEVELS.index(level) if level in LEVELS else len(LEVELS))


class DemoFeed:
    def __init__(self, persons: int, seed: int, protection_scale: float):
        self.simulation = Simulation(SyntheticConfig(persons=persons, seed=seed, protection_scale=protection_scale))
        self.documents: list[EventDocument] = list(self.simulation.events(years=1))
        self.protection_of_event = {d.hendelsesdokument: protection_of(d) for d in self.documents}
        self.published = 0

    def protected_events(self) -> Counter:
        """Events per protection level other than ugradert (counts only)."""
        return Counter(level for level in self.protection_of_event.values() if level != "ugradert")

    @property
    def done(self) -> bool:
        return self.published == len(self.documents)

    async def publish(self, simulator, seconds: float) -> None:
        """Append the year's events to the running feed simulator, evenly over `seconds`."""
        loop = asyncio.get_running_loop()
        started, total = loop.time(), len(self.documents)
        while self.published < total:
            due = min(total, int(total * (loop.time() - started) / seconds) + 1)
            if due > self.published:
                simulator.append(self.documents[self.published : due])
                self.published = due
            await asyncio.sleep(TICK_SECONDS)  # the pace of the compressed year, not a wait for an outcome
