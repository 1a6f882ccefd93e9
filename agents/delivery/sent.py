"""What a subscription was sent, read back page by page, as it may leave the bus now.

    reader = SentReader(bootstrap, topics, pull_prefix, egress, history_days)
    page = await reader.page(subscription, kind, after=cursor, limit=100)   # Page(events, next, more)

- A pull subscription (agents/delivery/pull.py) reads its own topic `<app id>-pull.<id>`: its
  deliveries in the order the delivery stage kept them. The cursor is an offset.
- Any other subscription reads what the router sent it in the last SAMBAND_HISTORY_DAYS days,
  from `<app id>-deliveries` (keys `<subscription>/<person>`), to recover what it missed: in
  order per person; the cursor holds an offset per partition. A request reads at most
  SCAN_BUDGET records of the topic (everyone's deliveries): a page can be short, or empty, and
  still have `more`.

Every record passes `Egress.outgoing` at the moment it is read, as a delivery does at the
moment it is sent: the person's grade now decides (a record the subscription may no longer get
is left out; withheld fields leave `data`), and `subject` is the subscription's own pseudonym.
Each event carries its idempotency key as the CloudEvents extension `idempotencykey`, the same
as the `webhook-id` of a webhook delivery.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.delivery.egress import Egress
from bus import clients
from bus.malformed import MALFORMED
from bus.reading import stop_quietly
from bus.topics import BUS_PARTITIONS, TopicNames
from connectors.pull.sink import pull_topic

SCAN_BUDGET = 50_000  # records of the deliveries topic one history request may read
FETCH_TIMEOUT_MS = 2_000


class CursorError(ValueError):
    """The cursor was not one this bus handed out (or belongs to the other kind of reading)."""


@dataclass
class Page:
    events: list[dict]
    next: str  # the cursor to ask with next
    more: bool  # the page stopped before the end: ask again at once


@dataclass(frozen=True)
class Reading:
    """Whose deliveries to read, and who they may go to (as the delivery stage's Target says)."""

    subscription: str
    pull: bool
    public_body: bool
    national: bool


def encode_cursor(kind: str, offsets: list[int]) -> str:
    text = kind + ".".join(str(o) for o in offsets)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, parts: int) -> list[int]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        offsets = [int(o) for o in text.removeprefix(kind).split(".")] if text.startswith(kind) else []
    except (binascii.Error, UnicodeDecodeError, ValueError):
        offsets = []
    if len(offsets) != parts or any(o < 0 for o in offsets):
        raise CursorError("the cursor is not one this subscription was given; start without `after`")
    return offsets


class SentReader:
    def __init__(self, bootstrap: str, topics: TopicNames, pull_prefix: str, egress: Egress, history_days: float):
        self.bootstrap = bootstrap
        self.topics = topics
        self.pull_prefix = pull_prefix
        self.egress = egress
        self.history_days = history_days

    async def page(self, reading: Reading, after: str | None, limit: int) -> Page:
        """CursorError, before anything is read, when `after` is not a cursor of this kind of reading."""
        kind, parts = ("p", 1) if reading.pull else ("d", BUS_PARTITIONS)
        start = decode_cursor(after, kind, parts) if after else None
        consumer = clients.consumer(self.bootstrap, enable_auto_commit=False, max_poll_records=min(limit, 10_000))
        await consumer.start()
        try:
            if reading.pull:
                return await self._pull(consumer, reading, start[0] if start else 0, limit)
            return await self._history(consumer, reading, start, limit)
        finally:
            await stop_quietly(consumer)

    async def _pull(self, consumer: AIOKafkaConsumer, reading: Reading, start: int, limit: int) -> Page:
        tp = TopicPartition(pull_topic(self.pull_prefix, reading.subscription), 0)
        if tp.topic not in await consumer.topics():  # nothing kept yet
            return Page([], encode_cursor("p", [start]), False)
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        position = max(start, first)  # what retention removed is gone
        events: list[dict] = []
        if position < end:
            consumer.seek(tp, position)
        while position < end and len(events) < limit:
            fetched = await consumer.getmany(tp, timeout_ms=FETCH_TIMEOUT_MS, max_records=limit - len(events))
            records = fetched.get(tp, [])
            if not records:
                break
            for record in records:
                position = record.offset + 1
                event = self._outgoing(record.value, reading)
                if event is not None:
                    events.append(event)
        return Page(events, encode_cursor("p", [position]), position < end)

    async def _history(self, consumer: AIOKafkaConsumer, reading: Reading, start: list[int] | None, limit: int) -> Page:
        tps = [TopicPartition(self.topics.deliveries, p) for p in range(BUS_PARTITIONS)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        if start is not None:
            positions = dict(zip(tps, start, strict=True))
        else:  # from N days ago
            since = int((time.time() - self.history_days * 86_400) * 1000)
            found = await consumer.offsets_for_times(dict.fromkeys(tps, since))
            positions = {tp: found[tp].offset if found[tp] is not None else ends[tp] for tp in tps}
        firsts = await consumer.beginning_offsets(tps)
        for tp in tps:
            positions[tp] = max(positions[tp], firsts[tp])
            if positions[tp] < ends[tp]:
                consumer.seek(tp, positions[tp])
        prefix = f"{reading.subscription}/".encode()
        events: list[dict] = []
        scanned = 0
        while len(events) < limit and scanned < SCAN_BUDGET:
            open_ = [tp for tp in tps if positions[tp] < ends[tp]]
            if not open_:
                break
            fetched = await consumer.getmany(*open_, timeout_ms=FETCH_TIMEOUT_MS)
            if not fetched:
                break
            for tp, records in fetched.items():
                for record in records:
                    if len(events) >= limit or record.offset >= ends[tp]:
                        break
                    positions[tp] = record.offset + 1
                    scanned += 1
                    if record.key is not None and record.key.startswith(prefix) and record.value is not None:
                        event = self._outgoing(record.value, reading)
                        if event is not None:
                            events.append(event)
        more = any(positions[tp] < ends[tp] for tp in tps)
        return Page(events, encode_cursor("d", [positions[tp] for tp in tps]), more)

    def _outgoing(self, value: bytes, reading: Reading) -> dict | None:
        """The event as it may leave now (the protection rule under the grade now), or None."""
        try:
            delivery = self.egress.outgoing(value.decode(), reading.subscription, reading.public_body, reading.national)
        except (*MALFORMED, UnicodeDecodeError):
            return None  # not a delivery record: nothing of it leaves
        if delivery is None:
            return None
        return {**delivery["event"], "idempotencykey": delivery["idempotency_key"]}
