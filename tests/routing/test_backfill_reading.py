"""The router's backfill reader (agents/routing/backfill.py) on the real broker: a backfill reads a
partition chunk after chunk, in offset order, up to where the live router was when it began there,
then on to where the live router was when that pass ended, and, when a pass sends nothing, ends
there however far the live router goes on (it sends the subscription everything after that point);
two backfills in one partition each read all of their range."""

from __future__ import annotations

import uuid
from datetime import date

from kafka_io import create_topics, produce

from agents.routing.backfill import CHUNK, BackfillRequest, Backfills, Progress

EVENTS = 1_500


def _request(subscription: str) -> BackfillRequest:
    return BackfillRequest(uuid.uuid4().hex, subscription, date(2000, 1, 1), "2000-01-01T00:00:00", "test", "fp")


async def _events_topic(bootstrap: str) -> str:
    topic = f"backfill-reading-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, topic, partitions=1)
    await produce(bootstrap, topic, [str(n).encode() for n in range(EVENTS)])
    return topic


class Router:
    """What the router's side keeps: each backfill's progress, and what it routed. It sends the
    subscription what the first pass reads; what came later, the live router sent it."""

    def __init__(self, live: int):
        self.live = live
        self.progress: dict[str, Progress] = {}
        self.routed: dict[str, list[int]] = {}

    def progress_of(self, partition: int, backfill_id: str) -> Progress | None:
        return self.progress.get(backfill_id)

    async def live_position(self, partition: int) -> int:
        return self.live

    def apply(self, backfills: Backfills) -> int:
        taken = backfills.take(10 * CHUNK)
        for chunk in taken:
            assert len(chunk.records) <= CHUNK
            self.routed.setdefault(chunk.request.id, []).extend(r.offset for r in chunk.records)
            sent = chunk.progress.passes == 1 and bool(chunk.records)
            self.progress[chunk.request.id] = chunk.progress.moved_to(chunk.read_to, self.live, sent)
        return len(taken)

    async def run(self, backfills: Backfills, after_chunk=lambda: None) -> None:
        for _ in range(100):  # each round reads a chunk or finds nothing to read
            read = await backfills.read_ahead({0}, self.progress_of, self.live_position, lambda request: True)
            if not self.apply(backfills) and not read:
                return
            after_chunk()
        raise AssertionError("the backfill did not end")


async def test_a_backfill_reads_to_where_the_live_router_was_when_its_first_pass_ended_and_no_further(
    kafka_bootstrap,
):
    """Before, it followed the live router for as long as its request stood, reading every later
    event again; ended at its beginning's end alone, it missed a correction the live router sent
    meanwhile to the corrected event's recipients, before the backfill had sent it the event."""
    topic = await _events_topic(kafka_bootstrap)
    backfills = Backfills(kafka_bootstrap, "unused", topic)
    request = _request("late-system")
    backfills.requests = {request.subscription: request}
    router = Router(live=1_000)

    def live_moves_on():
        progress = router.progress[request.id]
        router.live = 1_500 if progress.passes > 1 else 1_200  # each new figure is written already

    try:
        await router.run(backfills, after_chunk=live_moves_on)
        assert router.routed[request.id] == list(range(1_200))
        assert router.progress[request.id] == Progress(0, 1_200, 1_200, passes=2)
        assert router.progress[request.id].done
        # Done: events the live router handles later are not read again for it.
        assert not await backfills.read_ahead({0}, router.progress_of, router.live_position, lambda request: True)
        assert not backfills.chunks
    finally:
        await backfills.close()


async def test_two_backfills_in_one_partition_each_read_their_whole_range_in_order(kafka_bootstrap):
    topic = await _events_topic(kafka_bootstrap)
    backfills = Backfills(kafka_bootstrap, "unused", topic)
    first, second = _request("system-a"), _request("system-b")
    backfills.requests = {first.subscription: first, second.subscription: second}
    router = Router(live=EVENTS)
    try:
        await router.run(backfills)
    finally:
        await backfills.close()
    assert router.routed[first.id] == router.routed[second.id] == list(range(EVENTS))
