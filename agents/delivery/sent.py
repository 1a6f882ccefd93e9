"""What a subscription was sent, read back page by page, as it may leave the bus now.

    reader = SentReader(bootstrap, topics, pull_prefix, egress, history_days, cursor_key, ready)
    page = await reader.page(Reading(subscription, pull, public_body, national), after, limit=100)
    # Page(events, next, more, skipped)

- A pull subscription (connectors/pull/) reads its own topic `<app id>-pull.<id>`: its
  deliveries in the order the delivery stage kept them. The cursor is an offset.
- Any other subscription reads what the router sent it in the last SAMBAND_HISTORY_DAYS days,
  from `<app id>-deliveries` (keys `<subscription>/<person>`), to recover what it missed: in
  order per person; the cursor holds an offset per partition. A request reads at most
  SCAN_BUDGET records of the topic (everyone's deliveries): a page can be short, or empty, and
  still have `more`.

A cursor is signed for its subscription (HMAC under SAMBAND_PSEUDONYM_KEY): one made up, another
subscription's, or one beyond what was kept is refused (CursorError). One older than what retention
keeps starts at the oldest kept, and the page says how many records were lost (`skipped`).

Every record passes `Egress.outgoing` at the moment it is read, as a delivery does at the
moment it is sent: the person's grade now decides (a record the subscription may no longer get
is left out; withheld fields leave `data`), and `subject` is the subscription's own pseudonym.
The subscription's grants now decide too: a field no longer granted leaves `data`, an event type
no longer granted is left out. A history read never reaches back further than
SAMBAND_HISTORY_DAYS, whatever the cursor says.
Each event carries its idempotency key as the CloudEvents extension `idempotencykey`, the same
as the `webhook-id` of a webhook delivery.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.delivery.egress import Egress
from bus import clients
from bus.malformed import MALFORMED
from bus.reading import stop_quietly
from bus.topics import DELIVERIES, TopicNames
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
    skipped: int = 0  # records after the cursor that retention removed before they were read


@dataclass(frozen=True)
class Reading:
    """Whose deliveries to read, and who they may go to (as the delivery stage's Target says)."""

    subscription: str
    pull: bool
    public_body: bool
    national: bool
    fields: dict[str, tuple[str, ...]]  # granted now: an event keeps only these, a type not granted is left out


class Cursors:
    """Cursors signed for their subscription: `<kind><offset>.<offset>...~<mac>`, base64url."""

    def __init__(self, key: bytes):
        self._key = key

    def _mac(self, subscription: str, text: str) -> str:
        return hmac.new(self._key, f"cursor/{subscription}/{text}".encode(), hashlib.sha256).hexdigest()[:16]

    def encode(self, subscription: str, kind: str, offsets: list[int]) -> str:
        text = kind + ".".join(str(o) for o in offsets)
        signed = f"{text}~{self._mac(subscription, text)}"
        return base64.urlsafe_b64encode(signed.encode()).decode().rstrip("=")

    def decode(self, subscription: str, cursor: str, kind: str, parts: int) -> list[int]:
        try:
            text, _, mac = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii").partition("~")
            signed = hmac.compare_digest(mac, self._mac(subscription, text))
            offsets = [int(o) for o in text.removeprefix(kind).split(".")] if signed and text.startswith(kind) else []
        except (binascii.Error, UnicodeDecodeError, ValueError):
            offsets = []
        if len(offsets) != parts or any(o < 0 for o in offsets):
            raise CursorError("the cursor is not one this subscription was given; start without `after`")
        return offsets


class SentReader:
    def __init__(
        self,
        bootstrap: str,
        topics: TopicNames,
        pull_prefix: str,
        egress: Egress,
        history_days: float,
        cursor_key: bytes,
        ready: Callable[[], bool],
    ):
        self.bootstrap = bootstrap
        self.topics = topics
        self.pull_prefix = pull_prefix
        self.egress = egress
        self.history_days = history_days
        self.cursors = Cursors(cursor_key)
        # Whether the delivery stage has read every person's grade: before that, everyone would pass
        # as unprotected, so nothing may be read.
        self.ready = ready

    async def page(self, reading: Reading, after: str | None, limit: int) -> Page:
        """CursorError, before anything is read, when `after` is not a cursor of this kind of reading."""
        kind, parts = ("p", 1) if reading.pull else ("d", DELIVERIES.partition_count())
        start = self.cursors.decode(reading.subscription, after, kind, parts) if after else None
        batch = limit if reading.pull else 10_000  # history: records of everyone, most of them skipped
        consumer = clients.consumer(self.bootstrap, enable_auto_commit=False, max_poll_records=batch)
        try:
            await consumer.start()
            if reading.pull:
                return await self._pull(consumer, reading, start[0] if start else None, limit)
            return await self._history(consumer, reading, start, limit)
        finally:
            await stop_quietly(consumer)

    async def _pull(self, consumer: AIOKafkaConsumer, reading: Reading, after: int | None, limit: int) -> Page:
        tp = TopicPartition(pull_topic(self.pull_prefix, reading.subscription), 0)
        cursor = functools.partial(self.cursors.encode, reading.subscription, "p")
        start = after or 0
        if tp.topic not in await consumer.topics():  # nothing kept yet
            if start:
                raise CursorError("the cursor lies beyond what was kept; start without `after`")
            return Page([], cursor([0]), False)
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if start > end:
            raise CursorError("the cursor lies beyond what was kept; start without `after`")
        position = max(start, first)  # what retention removed is gone: counted in `skipped`
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
        return Page(events, cursor([position]), position < end, skipped=max(0, first - start) if after else 0)

    async def _history(self, consumer: AIOKafkaConsumer, reading: Reading, start: list[int] | None, limit: int) -> Page:
        tps = [TopicPartition(self.topics.deliveries, p) for p in range(DELIVERIES.partition_count())]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        since = int((time.time() - self.history_days * 86_400) * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(tps, since))
        window = {tp: found[tp].offset if found[tp] is not None else ends[tp] for tp in tps}  # N days ago
        positions = window if start is None else dict(zip(tps, start, strict=True))
        if any(positions[tp] > ends[tp] for tp in tps):
            raise CursorError("the cursor lies beyond what was kept; start without `after`")
        firsts = await consumer.beginning_offsets(tps)
        skipped = sum(max(0, firsts[tp] - positions[tp]) for tp in tps) if start is not None else 0
        for tp in tps:  # never before what is kept, never further back than the window
            positions[tp] = max(positions[tp], firsts[tp], window[tp])
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
        next_cursor = self.cursors.encode(reading.subscription, "d", [positions[tp] for tp in tps])
        return Page(events, next_cursor, more, skipped)

    def _outgoing(self, value: bytes, reading: Reading) -> dict | None:
        """The event as it may leave now (the protection rule under the grade now), or None."""
        try:
            delivery = self.egress.outgoing(value.decode(), reading.subscription, reading.public_body, reading.national)
        except (*MALFORMED, UnicodeDecodeError):
            return None  # not a delivery record: nothing of it leaves
        if delivery is None:
            return None
        event = delivery["event"]
        if delivery.get("kind") != "purge":
            granted = reading.fields.get(event["type"].rpartition(".")[2])
            if granted is None:
                return None  # a type the subscription no longer gets
            event["data"] = _granted(event.get("data"), granted)
        return {**event, "idempotencykey": delivery["idempotency_key"]}


def _granted(data, paths: tuple[str, ...]) -> dict:
    """`data` keeping only the granted field paths (`envelope.person`, `newAddress`)."""
    if not isinstance(data, dict):
        return {}
    envelope_fields = {p.removeprefix("envelope.") for p in paths if p.startswith("envelope.")}
    kept = {k: v for k, v in data.items() if k in paths and k != "envelope"}
    envelope = data.get("envelope")
    if envelope_fields and isinstance(envelope, dict):
        kept["envelope"] = {k: v for k, v in envelope.items() if k in envelope_fields}
    return kept
