"""Whom a correction follows: the event's routing record, which a backfill joins and which expires
after the retention the operator sets (issue 17, items 1 and 4): the router's state, no broker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import orjson
from aiokafka import ConsumerRecord
from routing_events import address, encode, event, synthetic_number
from subscription_factory import subscription

from agents.config import Settings
from agents.routing.backfill import BackfillRequest, Backfills, Chunk, Progress
from agents.routing.index import RoutingIndex
from agents.routing.stage import Route
from bus.topics import topic_names

MOVE_FIELDS = ["envelope.person", "movedDate", "newAddress", "previousAddress", "scope"]
PERSON = synthetic_number(3, 4, 80, 412)


def _message(offset: int, record: dict) -> ConsumerRecord:
    value = encode(record)
    return ConsumerRecord("events", 0, offset, 0, 0, PERSON.encode(), value, None, len(PERSON), len(value), [])


def _move(event_id: str, **envelope) -> dict:
    record = event(
        "Move", PERSON, ["0301", "4601"], previousAddress=address("0301", "Gammelveien", 1),
        newAddress=address("4601", "Storgata", 1), scope="betweenKommuner", envelope=envelope,
    )  # fmt: skip
    record["envelope"]["id"] = event_id
    return record


@contextmanager
def _route(tmp_path, *subs) -> Iterator[tuple[Route, BackfillRequest]]:
    """A router whose index holds `subs`, with a backfill asked for the last of them; its state
    closed after."""
    index = RoutingIndex()
    for sub in subs:
        index.put(sub)
    backfills = Backfills("127.0.0.1:1", "unused", "events")  # (never reads: the chunks are given)
    request = BackfillRequest.new(subs[-1], date(2000, 1, 1), "test")
    backfills.requests = {subs[-1].id: request}
    by_id = {sub.id: sub for sub in subs}
    route = Route(Settings(data_dir=str(tmp_path)), topic_names("records-test"), index, by_id.get, backfills=backfills)
    try:
        for state in route.states:
            state.partitions[0] = {} if state.disk is None else state.disk.table(0, state.encode, state.decode)
        yield route, request
    finally:
        for state in route.states:
            state.close()


def _sent(route: Route, outputs: list) -> list[str]:
    """The idempotency keys of the deliveries written: `<event id>.<subscription id>`."""
    return [orjson.loads(o[2])["idempotency_key"] for o in outputs if o[0] == route.topics.deliveries]


def _backfill_next(route: Route, request: BackfillRequest, records: list[ConsumerRecord], outputs: list) -> None:
    """The backfill's next chunk, as the reader reads it (from its progress up to its end or the live
    router's position, whichever is first), routed in a batch of the router with no live event."""
    progress = route.progress_of(0, request.id) or Progress(0, route.live_next[0], 0)
    limit = min(progress.end, route.live_next[0])
    route.backfills.chunks.append(
        Chunk(request, 0, progress, [r for r in records if progress.next <= r.offset < limit], limit)
    )
    route.handle_batch([], outputs)


def test_a_backfill_joins_the_events_routing_record_and_keeps_nothing_of_its_own_per_event(tmp_path):
    """Before, a backfill kept `sent:<event id>` in its own state for every event it sent, and
    nothing ever removed them: the router's state grew with every backfill, past any retention."""
    late = subscription("late-system", "all", ["Move"], {"Move": MOVE_FIELDS})
    with _route(tmp_path, late) as (route, request):
        route.records.set(0, "event-live", ("skole", "sfo"))  # as the live router left them
        route.records.set(0, "event-expired", ("skole",))
        route.records.partitions[0]["event-expired"] = (0, ("skole",))  # set in 1970: past any retention
        route.live_next[0] = 2
        outputs: list = []
        chunk = Chunk(
            request, 0, Progress(0, 2, 0), [_message(0, _move("event-live")), _message(1, _move("event-expired"))], 2
        )
        route.backfills.chunks.append(chunk)
        route.handle_batch([], outputs)

        assert _sent(route, outputs) == ["event-live.late-system", "event-expired.late-system"]
        assert route.records.get(0, "event-live") == ("skole", "sfo", "late-system")  # its corrections reach it
        assert route.records.get(0, "event-expired") is None  # a correction: to nobody, not the late system alone
        assert [key for key, _ in route.backfill_state.partitions[0].items()] == ["progress:" + request.id]
        # Backfilled again (asked again, or after a crash): what the record lists is not sent twice.
        again: list = []
        route.backfill_state.partitions[0].pop("progress:" + request.id)
        route.backfills.chunks.append(chunk)
        route.handle_batch([], again)
        assert _sent(route, again) == ["event-expired.late-system"]


def test_corrections_the_live_router_sent_while_a_backfill_ran_reach_the_backfilled_subscription_in_order(
    tmp_path,
):
    """Found by review: a backfill that ended where the live router was when it began missed a
    correction the live router routed meanwhile (to the recipients of the event, which the
    backfill had not sent yet); and one that ended after a second pass missed a correction of
    that correction. The subscription kept the uncorrected event."""
    skole = subscription("skole", "all", ["Move"], {"Move": MOVE_FIELDS})
    late = subscription("late-system", "all", ["Move"], {"Move": MOVE_FIELDS})
    old = _message(0, _move("event-old"))
    fix = _message(1, _move("event-fix", changeKind="correction", correctsEventId="event-old"))
    fix_of_fix = _message(2, _move("event-fix-2", changeKind="correction", correctsEventId="event-fix"))
    live: list = []
    backfilled: list = []
    with _route(tmp_path, skole, late) as (route, request):
        route.records.set(0, "event-old", ("skole",))  # routed before the late system subscribed
        route.live_next[0] = 1
        taken = Chunk(request, 0, Progress(0, 1, 0), [old], 1)  # read when it began, routed after the correction:
        route.handle_batch([fix], live)
        route.backfills.chunks.append(taken)
        route.handle_batch([], backfilled)
        assert route.progress_of(0, request.id) == Progress(0, 2, 1, passes=2)  # on to the correction
        route.handle_batch([fix_of_fix], live)  # its correction, before the second pass reads the first
        for _ in range(5):  # (two chunks: the second pass's, the third's; the fourth is empty: done at once)
            if route.progress_of(0, request.id).done:
                break
            _backfill_next(route, request, [old, fix, fix_of_fix], backfilled)
        assert _sent(route, live) == ["event-fix.skole", "event-fix-2.skole"]
        assert _sent(route, backfilled) == ["event-old.late-system", "event-fix.late-system", "event-fix-2.late-system"]
        assert route.progress_of(0, request.id).done


def test_a_pass_over_events_the_live_router_sent_the_subscription_ends_the_backfill_while_live_traffic_goes_on(
    tmp_path,
):
    """A pass that sends nothing ends it: what came after it began, the live router sent the
    subscription (it was among the router's by then). Were a skipped event counted as sent, every
    pass would bring another for as long as live events come."""
    skole = subscription("skole", "all", ["Move"], {"Move": MOVE_FIELDS})
    late = subscription("late-system", "all", ["Move"], {"Move": MOVE_FIELDS})
    events = [_message(offset, _move(f"event-{offset}")) for offset in range(3)]
    live: list = []
    backfilled: list = []
    with _route(tmp_path, skole, late) as (route, request):
        route.records.set(0, "event-0", ("skole",))  # routed before the late system subscribed
        route.live_next[0] = 1
        taken = Chunk(request, 0, Progress(0, 1, 0), events[:1], 1)  # read when it began
        route.handle_batch(events[1:2], live)  # the live router goes on meanwhile
        route.backfills.chunks.append(taken)
        route.handle_batch([], backfilled)
        assert route.progress_of(0, request.id) == Progress(0, 2, 1, passes=2)
        route.handle_batch(events[2:], live)  # and on
        _backfill_next(route, request, events, backfilled)
        assert route.progress_of(0, request.id) == Progress(0, 2, 2, passes=2) and route.progress_of(0, request.id).done
        assert _sent(route, backfilled) == ["event-0.late-system"]
        assert sorted(_sent(route, live)) == sorted(f"event-{n}.{s}" for n in (1, 2) for s in ("skole", "late-system"))


def test_a_backfill_routes_only_while_its_subscription_is_as_it_was_when_asked_for(tmp_path):
    """The backfill's router is made anew when the subscription changes (the index then holds a new
    entry for it) and routes only while its fingerprint is the request's."""
    late = subscription("late-system", "all", ["Move"], {"Move": MOVE_FIELDS})
    with _route(tmp_path, late) as (route, request):
        assert route.backfill_current(request)
        narrower = subscription("late-system", "all", ["Move"], {"Move": ["movedDate"]})
        route.index.put(narrower)
        route.subscription_of = {narrower.id: narrower}.get
        assert not route.backfill_current(request)  # changed since: its backfill stops
        route.index.put(late)
        route.subscription_of = {late.id: late}.get
        assert route.backfill_current(request)  # as it was again
        route.index.remove(late.id)
        assert not route.backfill_current(request)  # deleted
