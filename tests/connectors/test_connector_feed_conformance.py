"""The Folkeregister feed source passes the conformance kit."""

from __future__ import annotations

import dataclasses
from contextlib import asynccontextmanager

from connector_fixtures import synthetic_feed

from connectors.folkeregister.feed_format import FUTURE_TYPE, UNUSUAL_TYPES
from connectors.folkeregister.source import FolkeregisterFeedSource
from connectors.testing import SourceConformance
from synthetic.folkeregister_simulator import DEFAULT_TOKEN, run_simulator

GOOD = [d for d in synthetic_feed(2000) if d.hendelsetype not in UNUSUAL_TYPES and d.entitetsendring == "registrereNy"]


class TestFeedSourceConformance(SourceConformance):
    connector = FolkeregisterFeedSource
    bad_input_reason = "event.unknown_type"
    invalid_configs = [
        ({"token": "conformance-secret-1"}, "base_url"),
        ({"base_url": "ftp://x", "token": "conformance-secret-2"}, "base_url"),
        ({"base_url": "http://x", "token": "conformance-secret-3", "document_concurrency": 0}, "document_concurrency"),
        ({"base_url": "http://x", "token": "conformance-secret-4", "page_sise": 10}, "page_sise"),
        ({"base_url": "http://x", "token": "conformance-secret-5", "document_fetch": "sometimes"}, "document_fetch"),
        ({"base_url": "http://x", "token": "conformance-secret-6", "encode_workers": -1}, "encode_workers"),
    ]
    secret_values = tuple(f"conformance-secret-{i}" for i in range(1, 7))

    @asynccontextmanager
    async def environment(self, tmp_path):
        async with run_simulator([]) as simulator:
            simulator.given = []  # documents served so far, for personal_values
            yield simulator

    def config(self, simulator) -> dict:
        return {"base_url": simulator.base_url, "token": DEFAULT_TOKEN, "poll_interval_s": 0.05}

    def _append(self, simulator, documents) -> list[str]:
        renumbered = [
            dataclasses.replace(d, sekvensnummer=simulator.store.latest + 1 + i) for i, d in enumerate(documents)
        ]
        simulator.append(renumbered)
        simulator.given += renumbered
        return [d.hendelsesdokument for d in renumbered]

    async def add_inputs(self, simulator, count: int) -> list[str]:
        start = len(simulator.given)
        return self._append(simulator, GOOD[start : start + count])

    async def add_bad_input(self, simulator) -> None:
        self._append(
            simulator,
            [dataclasses.replace(GOOD[-1], hendelsetype=FUTURE_TYPE, hendelsesdokument=GOOD[-2].hendelsesdokument)],
        )

    def personal_values(self, simulator) -> list[str]:
        values = []
        for document in simulator.given:
            for fact in document.opplysninger.values():
                if isinstance(fact, dict):  # names and addresses
                    values += [v for k, v in fact.items() if isinstance(v, str) and k != "kommunenummer"]
        return [v for v in values if len(v) > 3]


class TestFeedSourceConformanceOneDocumentAtATime(TestFeedSourceConformance):
    """The same kit with documents fetched one by one, as from the real register, and encoded without workers."""

    def config(self, simulator) -> dict:
        return {**super().config(simulator), "document_fetch": "single", "encode_workers": 0}
