"""`samband dlq`: inspect and replay dead letters (docs/delivery.md, "Dead letters").

IDs are `<partition>:<offset>` in `samband-deadletter`. Listing and showing print only
metadata from the headers (reason, stage, subscription, event id and type): never the event's
data, which is sealed (AES-GCM, connectors/dead_letters.py). `show --reveal` opens it with
SAMBAND_DLQ_KEY: holding the key is the access control, and every reveal is logged. Replay opens
a `deliver` dead letter with the key, projects it again under the person's protection grade now
(the rule of agents/delivery/egress.py: the grade from `<app id>-router-persons`, the subscription
as it is now) and writes it back to `samband-deliveries`, so the subscriber gets the same
webhook-id (idempotency key) as before. One the subscription may no longer get is not replayed.
The delivery stage projects it once more when it is sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import structlog

from agents.config import bootstrap_servers, get_settings

log = structlog.get_logger("samband.dlq")

REPLAY_HEADER = "samband-replay-of"


class DlqError(Exception):
    """The command cannot do what was asked; the message says why (no personal data)."""


class DeadLetterNotFound(DlqError):
    """No delivery dead letter has the id given."""


def _run(coroutine) -> int:
    from agents.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)  # log lines (the reveal audit) go to stderr
    try:
        return asyncio.run(coroutine)
    except DlqError as exc:
        print(f"samband dlq: {exc}", file=sys.stderr)
        return 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dlq", help="inspect and replay dead letters", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="dlq_command", metavar="COMMAND", required=True)
    listing = commands.add_parser("list", help="list dead letters (metadata only)")
    listing.add_argument("--subscription", help="only this subscription's delivery dead letters")
    listing.add_argument("--stage", choices=("source", "ingest", "route", "deliver"), help="only this stage's")
    listing.add_argument(
        "--reason", help="only this reason code, or codes starting so when it ends in a dot (kommune.)"
    )
    listing.add_argument("--since", type=parse_since, help="only those written since: ISO 8601 time, or 30m, 2h, 7d")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=lambda a: _run(list_dead_letters(a.subscription, a.stage, a.reason, a.since, a.json)))
    show = commands.add_parser("show", help="one dead letter's metadata; --reveal adds its data")
    show.add_argument("id", help="<partition>:<offset>")
    show.add_argument(
        "--reveal",
        action="store_true",
        help="print the event data: opens it with SAMBAND_DLQ_KEY (personal data; logged)",
    )
    show.set_defaults(handler=lambda a: _run(show_dead_letter(a.id, a.reveal)))
    replay = commands.add_parser("replay", help="send delivery dead letters back through delivery")
    target = replay.add_mutually_exclusive_group(required=True)
    target.add_argument("id", nargs="?", help="<partition>:<offset>")
    target.add_argument("--subscription", help="every delivery dead letter of this subscription")
    replay.add_argument("--force", action="store_true", help="also those the ledger shows delivered since")
    replay.set_defaults(handler=lambda a: _run(replay_dead_letters(a.id, a.subscription, a.force)))


def _topics():
    from bus.topics import topic_names

    return topic_names(get_settings().app_id)


async def _dead_letters(since: float | None = None):
    """(id, DeadLetter, record) for every dead letter (written since `since`, epoch seconds), oldest
    first per partition."""
    from bus.reading import read_topic
    from connectors.dead_letters import DeadLetter

    async for record in read_topic(bootstrap_servers(), _topics().deadletter, since=since):
        yield f"{record.partition}:{record.offset}", DeadLetter.from_headers(record.headers), record


def _seal():
    """The dead letters' seal, from SAMBAND_DLQ_KEY; SettingsError (one line) without a valid key."""
    from agents.config import dead_letter_key
    from connectors.dead_letters import DeadLetterSeal

    return DeadLetterSeal(dead_letter_key())


def _opened(seal, record) -> bytes:
    from connectors.dead_letters import DeadLetterKeyError

    try:
        return seal.open(record.value)
    except DeadLetterKeyError as exc:
        raise DlqError(f"{record.partition}:{record.offset}: {exc}") from None


async def _projection(topics):
    """(opened dead letter, subscription id) -> the record to replay, projected under the person's
    grade now, or None when the subscription may not get it. A record that is not a delivery record
    goes back as it is: the delivery stage dead-letters it again as malformed."""
    import orjson

    from agents.delivery.egress import Egress, Grades
    from bus.malformed import MALFORMED
    from bus.reading import read_topic

    grades, subscriptions = Grades(), {}
    async for record in read_topic(bootstrap_servers(), topics.router_persons):
        try:
            grades.apply_state(record.key, record.value)
        except MALFORMED:  # unreadable: the strictest grade, as the router and delivery stage read it
            grades.set(record.key.decode(errors="replace"), "strengtFortrolig")
    async for record in read_topic(bootstrap_servers(), topics.subscriptions):
        try:
            subscriptions[record.key.decode()] = None if record.value is None else orjson.loads(record.value)
        except MALFORMED:
            subscriptions[record.key.decode(errors="replace")] = None
    egress = Egress(grades, b"")  # the subject is set when the delivery is sent

    def project(value: bytes, subscription: str) -> bytes | None:
        try:
            delivery = orjson.loads(value)
            delivery["event"]["type"]
        except MALFORMED:
            return value
        sub = subscriptions.get(subscription) or {}  # a deleted subscription: judged as the narrowest
        if not egress.project(delivery, sub.get("public_body") is True, sub.get("kommuner") == "all"):
            return None
        return orjson.dumps(delivery)

    return project


async def list_dead_letters(
    subscription: str | None = None,
    stage: str | None = None,
    reason: str | None = None,
    since: float | None = None,
    as_json: bool = False,
) -> int:
    """The dead letters that match every filter given; `reason` matches a code or a code's prefix
    ending in a dot (`kommune.`), `since` is epoch seconds."""
    rows = []
    async for dlq_id, dead, record in _dead_letters(since):  # from the first offset at `since`: not the whole topic
        if (subscription and dead.subscription != subscription) or (stage and dead.stage != stage):
            continue
        if reason and not (dead.reason == reason or (reason.endswith(".") and dead.reason.startswith(reason))):
            continue
        if since is not None and record.timestamp / 1000 < since:
            continue
        rows.append({"id": dlq_id, "stage": dead.stage, "subscription": dead.subscription, "reason": dead.reason,
                     "time": dead.time, "event": _event_of(dead, record), "event_type": dead.event_type})  # fmt: skip
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'ID':<12} {'STAGE':<8} {'SUBSCRIPTION':<24} {'REASON':<28} {'TIME':<25} EVENT")
    for row in rows:
        print(f"{row['id']:<12} {row['stage']:<8} {row['subscription'] or '-':<24} {row['reason']:<28} "
              f"{row['time']:<25} {row['event'] or ''}")  # fmt: skip
    return 0


def _event_of(dead, record) -> str | None:
    """The event a dead letter holds: its id from the headers, else (a source's letter) the record's
    key, the event id by contract there. (An ingest letter's key is the person's pseudonym: never shown.)"""
    if dead.event_id:
        return dead.event_id
    return _safe_key(record.key) if dead.stage == "source" else None


def parse_since(text: str) -> float:
    """`--since`: an ISO 8601 time, or a duration back from now (`90s`, `30m`, `2h`, `7d`)."""
    import re
    import time
    from datetime import datetime

    if match := re.fullmatch(r"(\d+)([smhd])", text.strip()):
        return time.time() - int(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("an ISO 8601 time or a duration such as 30m, 2h, 7d") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("the time needs a zone, e.g. 2026-12-05T10:00:00+01:00")
    return moment.timestamp()


async def show_dead_letter(dlq_id: str, reveal: bool) -> int:
    seal = _seal() if reveal else None
    async for found_id, dead, record in _dead_letters():
        if found_id != dlq_id:
            continue
        # `id` is the dead letter's own place (what list, show and replay take); where the original
        # was read from is `read_from`, not to be mistaken for it.
        meta = {k: v for k, v in vars(dead).items() if v is not None and k not in ("topic", "partition", "offset")}
        shown = {"id": found_id, **meta, "key": _safe_key(record.key)}
        if dead.topic is not None:
            shown["read_from"] = {"topic": dead.topic, "partition": dead.partition, "offset": dead.offset}
        if seal is not None:
            shown["value"] = _opened(seal, record).decode(errors="replace")
            log.warning("dlq.revealed", dlq_id=found_id, subscription=dead.subscription, event_id=dead.event_id)
        print(json.dumps(shown, indent=2, ensure_ascii=False))
        return 0
    raise DlqError(f"no dead letter {dlq_id} in {_topics().deadletter}")


def _safe_key(key: bytes | None) -> str | None:
    # Keys are event ids or <subscription>/<pseudonym> by contract: no identity numbers.
    return key.decode(errors="replace") if key is not None else None


async def replay_dead_letters(dlq_id: str | None, subscription: str | None, force: bool) -> int:
    replayed, chosen = await replay(dlq_id, subscription, force)
    print(f"replayed {replayed} of {chosen} dead letters to {_topics().deliveries}")
    return 0


async def replay(dlq_id: str | None, subscription: str | None, force: bool, say=print) -> tuple[int, int]:
    """Replay as `samband dlq replay` does (also the dashboard's replay button); (replayed, chosen)."""
    from agents.delivery.ledger import ledger_key
    from bus import clients
    from bus.reading import read_topic
    from connectors.dead_letters import PREFIX

    topics = _topics()
    seal = _seal()
    chosen = [
        (found_id, dead, record)
        async for found_id, dead, record in _dead_letters()
        if dead.stage == "deliver" and (found_id == dlq_id or (subscription and dead.subscription == subscription))
    ]
    if dlq_id and not chosen:
        raise DeadLetterNotFound(f"no delivery dead letter {dlq_id} in {topics.deadletter}")
    delivered = set()
    if not force:  # a dead letter replayed and delivered before must not arrive twice
        async for entry in read_topic(bootstrap_servers(), topics.ledger):
            try:
                if entry.value is not None and json.loads(entry.value)["status"] == "delivered":
                    delivered.add(entry.key)
            except (ValueError, KeyError, TypeError):  # an unreadable entry shows nothing delivered
                continue
    projection = await _projection(topics) if chosen else None
    producer = clients.durable_producer(bootstrap_servers())
    await producer.start()
    replayed = 0
    try:
        for found_id, dead, record in chosen:
            event_id = dead.event_id
            if event_id and ledger_key(event_id, dead.subscription or "") in delivered:
                say(f"{found_id}: skipped, the ledger shows it delivered since (use --force)")
                continue
            value = projection(_opened(seal, record), dead.subscription or "")
            if value is None:
                say(
                    f"{found_id}: not replayed, the person's protection grade no longer lets {dead.subscription} get it"
                )
                log.info("dlq.withheld", dlq_id=found_id, subscription=dead.subscription, event_id=event_id)
                continue
            headers = [
                (k, v)
                for k, v in record.headers
                if not k.startswith(PREFIX) and k not in ("samband-subscription", REPLAY_HEADER)
            ]
            headers.append((REPLAY_HEADER, found_id.encode()))
            # Back to the partition it was read from: the router puts a delivery in its person's
            # partition, so that is where its (subscription, person) queue is, not where the key hashes.
            partition = dead.partition if dead.topic == topics.deliveries else None
            await producer.send_and_wait(topics.deliveries, value, key=record.key, headers=headers, partition=partition)
            log.info("dlq.replayed", dlq_id=found_id, subscription=dead.subscription, event_id=event_id)
            replayed += 1
    finally:
        await producer.stop()
    return replayed, len(chosen)
