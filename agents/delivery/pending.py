"""What is pending for one (subscription, person): an ordered queue whose head alone is in flight.

Pure functions over a queue (agents/delivery/queues.py keeps them), so the order and retry
rules are testable without Kafka. A queue that waits or is retried is stored in the topic
`<app id>-delivery-pending` as `{"queue": [entry, ...], "seen": offset}`: `seen` is the offset
of the last delivery record it took, so a record read again after a crash (offsets not yet
committed) is not delivered a second time after later ones. An entry:

    {"key": idempotency key, "record": delivery JSON text, "headers": [[name, value], ...],
     "attempts": attempts so far, "due": epoch seconds of the next attempt,
     "source": [topic, partition, offset]}

The same topic holds, under `<subscription>/~behind`, where a subscription at its memory limit
resumes taking the records it left in the deliveries topic (`Behind`, at the end of this module).

In the topic each entry's `record` is sealed (connectors/dead_letters.py, the dead-letter key),
base64 text: a held delivery may wait through a change of the person's protection grade, so
nothing readable waits in the topic. It is projected under the grade of the moment it is sent
(agents/delivery/egress.py).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import orjson

from connectors.dead_letters import DeadLetterSeal

# What the delivery stage does with the head after an outcome.
DELIVERED, DEAD, RETRY, HOLD = "delivered", "dead", "retry", "hold"


def new_entry(key: str, record: str, headers: list[list[str]], source: list, now: float) -> dict:
    return {"key": key, "record": record, "headers": headers, "attempts": 0, "due": now, "source": source}


def stored_state(value: bytes) -> dict:
    """A stored queue read back from the pending topic; ValueError when the record is not one."""
    state = orjson.loads(value)
    if not (
        isinstance(state, dict)
        and type(state.get("seen")) is int
        and isinstance(state.get("queue"), list)
        and state["queue"]
        and all(map(_is_entry, state["queue"]))
    ):
        raise ValueError("not a stored queue")
    return state


_NOT_STORED = ("sent", "sealed")  # what an earlier attempt sent (for its ledger entry); the sealed record's cache


def stored_value(queue: list[dict], seen: int, seal: DeadLetterSeal) -> bytes:
    """The queue as the pending topic holds it: each entry's record sealed. In a queue of several,
    an entry's record is sealed once and kept sealed in the entry (`sealed`): the queue is stored
    again at each change of its head, and sealing every entry each time made a person's n events
    cost n² seals. A queue of one is stored once or twice: its entry keeps no sealed copy, which
    would add about 1 KB per delivery held in memory (bench/bench_delivery_memory.py)."""
    keep = len(queue) > 1
    stored = []
    for entry in queue:
        sealed = entry.get("sealed")
        if sealed is None:
            sealed = base64.b64encode(seal.seal(entry["record"].encode())).decode("ascii")
            if keep:
                entry["sealed"] = sealed
        stored.append({k: v for k, v in entry.items() if k not in _NOT_STORED} | {"record": sealed})
    return orjson.dumps({"queue": stored, "seen": seen})


def opened(state: dict, seal: DeadLetterSeal) -> dict:
    """A stored state with its records readable again; DeadLetterKeyError (a ValueError) under another key."""
    several = len(state["queue"]) > 1  # (stored_value: only those keep their sealed copy)
    queue = [
        {
            **entry,
            "record": seal.open(base64.b64decode(entry["record"], validate=True)).decode(),
            **({"sealed": entry["record"]} if several else {}),
        }
        for entry in state["queue"]
    ]
    return {**state, "queue": queue}


def _is_entry(entry) -> bool:
    if not isinstance(entry, dict):
        return False
    source, headers = entry.get("source"), entry.get("headers")
    return (
        isinstance(entry.get("key"), str)
        and isinstance(entry.get("record"), str)
        and type(entry.get("attempts")) is int
        and type(entry.get("due")) in (int, float)
        and isinstance(headers, list)
        and all(_is_pair(h) for h in headers)
        and isinstance(source, list)
        and len(source) == 3
        and isinstance(source[0], str)
        and type(source[1]) is int
        and type(source[2]) is int
    )


def _is_pair(header) -> bool:
    return isinstance(header, list) and len(header) == 2 and all(isinstance(part, str) for part in header)


def append(state: dict | None, entry: dict) -> dict | None:
    """The state with `entry` queued at the end, or None when its record was accepted before."""
    state = state or {"queue": [], "seen": -1}
    offset = entry["source"][2]
    if offset <= state["seen"]:
        return None
    return {"queue": [*state["queue"], entry], "seen": offset}


@dataclass(frozen=True)
class Decision:
    action: str  # DELIVERED, DEAD, RETRY or HOLD
    queue: list[dict]  # the queue after the decision; its head (if any) is what goes next
    entry: dict  # the head the outcome was for, attempts counted
    reason: str | None = None


def decide(queue: list[dict], outcome: dict, schedule: tuple[float, ...], now: float) -> Decision | None:
    """Apply an attempt's outcome to the head; None if it is not for the head (stale or duplicate)."""
    if not queue or queue[0]["key"] != outcome["idempotency_key"]:
        return None
    head = {**queue[0], "attempts": queue[0]["attempts"] + 1}
    status, reason = outcome["status"], outcome.get("reason")
    if status == "delivered":
        return Decision(DELIVERED, queue[1:], head)
    if status == "rejected" and reason == "delivery.gone":
        # The subscriber is gone: the subscription is disabled and the event waits for it to be fixed.
        return Decision(HOLD, [{**head, "due": now}, *queue[1:]], head, reason)
    if status == "rejected":
        return Decision(DEAD, queue[1:], head, reason)
    retries_done = head["attempts"] - 1
    if retries_done >= len(schedule):
        return Decision(DEAD, queue[1:], head, "delivery.retries_exhausted")
    wait = outcome.get("retry_after")
    # A subscriber's Retry-After is honoured up to the schedule's longest step, never beyond.
    wait = schedule[retries_done] if wait is None else min(wait, max(schedule))
    head["due"] = now + wait
    return Decision(RETRY, [head, *queue[1:]], head, reason)


# --- a subscription behind: its records left in the deliveries topic -----------------------------

BEHIND = "~behind"  # never a pseudonym (hex), so `<subscription>/~behind` is never a queue key


@dataclass
class Behind:
    """A subscription with as many entries in memory as it may hold (queues.py) leaves its further
    records of one deliveries partition where they are, in the topic, and takes them from `cursor`
    on when it has room again. Stored in the pending topic (key `behind_key`), with the queues."""

    cursor: int  # deliveries offset from which its records are still to be taken
    last: int  # offset of the last of its records left in the topic
    left: int  # how many of its records wait there (for status; about, after a crash)


def behind_key(subscription: str) -> str:
    return f"{subscription}/{BEHIND}"


def is_behind_key(key: str) -> bool:
    return key.endswith("/" + BEHIND)


def behind_value(behind: Behind) -> bytes:
    return orjson.dumps({"behind": {"cursor": behind.cursor, "last": behind.last, "left": behind.left}})


def behind_state(value: bytes) -> Behind:
    """ValueError when the record is not a stored Behind."""
    state = orjson.loads(value)
    fields = state.get("behind") if isinstance(state, dict) else None
    if not (isinstance(fields, dict) and all(type(fields.get(f)) is int for f in ("cursor", "last", "left"))):
        raise ValueError("not a subscription behind")
    return Behind(fields["cursor"], fields["last"], fields["left"])
