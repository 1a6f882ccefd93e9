"""The subscription states of `samband status` from what Kafka holds (pure: no broker needed)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from types import SimpleNamespace

from agents.delivery.target import parse_target
from agents.delivery_health import _Gathered, assess


def _webhook(sub_id: str, **delivery) -> dict:
    return {
        "id": sub_id,
        "delivery": {"kind": "webhook", "url": "http://127.0.0.1:9/hook", "secret_ref": f"file:{sub_id}", **delivery},
    }


def _verified(sub: dict, disabled_reason: str | None = None) -> dict:
    return {
        "fingerprint": parse_target(sub["id"], sub).fingerprint,
        "verified": True,
        "disabled_reason": disabled_reason,
    }


def _outcome(sub: str, status: str, at: float, reason: str | None = None):
    """An attempt record; written a second after it was decided (`at`)."""
    value = json.dumps(
        {"idempotency_key": f"e.{sub}", "status": status, "reason": reason, "at": int(at * 1000)}
    ).encode()
    return SimpleNamespace(key=f"{sub}/{'a' * 32}".encode(), value=value, timestamp=int((at + 1) * 1000))


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def test_each_state_and_what_decides_it():
    now = time.time()
    subs = {
        s["id"]: s
        for s in [
            _webhook("ok"),
            _webhook("paused", paused=True),
            _webhook("gone"),
            _webhook("down"),
            _webhook("invalid", retry_schedule=[-1]),
        ]
    }
    gathered = _Gathered(
        subscriptions=subs,
        status={
            sid: _verified(s, "delivery.gone" if sid == "gone" else None) for sid, s in subs.items() if sid != "invalid"
        },
        pending={f"down/{'b' * 32}": [{"attempts": 3}, {"attempts": 0}], f"ok/{'c' * 32}": [{"attempts": 0}]},
        ledger={
            b"e1/ok": {"subscription": "ok", "status": "delivered", "at": _iso(now - 8)},
            b"e2/down": {"subscription": "down", "status": "dead_lettered", "at": "2024-03-01T08:00:00.000+00:00"},
        },
        dead_letters={"down": {"e2", "e3"}},
        outcomes=[_outcome("ok", "retry", now - 9, "http.500")]
        + [_outcome("down", "retry", now - 5 + i, "http.503") for i in range(5)],
    )
    rows = {row.id: row for row in assess(gathered, now)}
    assert {sid: (row.state, row.reason) for sid, row in rows.items()} == {
        "ok": ("active", None),
        "paused": ("paused", None),
        "gone": ("disabled", "delivery.gone"),
        "down": ("failing", "http.503"),
        "invalid": ("disabled", "subscription.delivery_invalid"),
    }
    assert (rows["down"].retry_backlog, rows["down"].pending, rows["down"].consecutive_failures) == (2, 2, 5)
    assert (rows["ok"].retry_backlog, rows["ok"].pending, rows["ok"].consecutive_failures) == (0, 1, 0)
    assert rows["ok"].last_delivered == _iso(now - 8) and rows["down"].last_delivered is None
    assert (rows["down"].dead_letters, rows["down"].dead_letters_unresolved) == (2, 2)


def test_four_failures_in_a_row_are_not_yet_failing():
    now = time.time()
    sub = _webhook("flaky")
    gathered = _Gathered(
        subscriptions={"flaky": sub},
        status={"flaky": _verified(sub)},
        outcomes=[_outcome("flaky", "retry", now - 4 + i, "http.500") for i in range(4)],
    )
    [row] = assess(gathered, now)
    assert (row.state, row.consecutive_failures) == ("active", 4)


def test_failures_count_from_the_last_delivery_in_the_ledger():
    """The attempt log holds failed attempts only: a success is the ledger's entry. A `delivered`
    attempt record (written before the log held failures only) is not counted as a failure."""
    now = time.time()
    sub = _webhook("back")
    gathered = _Gathered(
        subscriptions={"back": sub},
        status={"back": _verified(sub)},
        ledger={b"e1/back": {"subscription": "back", "status": "delivered", "at": _iso(now - 8)}},
        outcomes=[_outcome("back", "retry", now - 10 + i * 0.5, "http.500") for i in range(4)]  # before it
        + [
            _outcome("back", "retry", now - 5, "http.503"),
            _outcome("back", "retry", now - 4, "delivery.timeout"),
            _outcome("back", "delivered", now - 3),
        ],
    )
    [row] = assess(gathered, now)
    assert (row.consecutive_failures, row.failing_since, row.reason) == (2, _iso(now - 5), None)
    assert row.state == "active"
