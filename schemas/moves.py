"""Move scope: within a kommune, or between kommuner, and what a move means to one kommune."""

from __future__ import annotations

from schemas.kommuner import same_kommune


def move_scope(previous_kommune: str | None, new_kommune: str) -> str:
    """The MoveScope symbol stored on a Move event. An unknown previous kommune counts as between;
    a reform's renumbering (Tromsø 5401 -> 5501) is within."""
    return "withinKommune" if _same(previous_kommune, new_kommune) else "betweenKommuner"


def _same(a: str | None, b: str | None) -> bool:
    return a == b or (a is not None and b is not None and same_kommune(a, b))


def scope_for(previous_kommune: str | None, new_kommune: str | None, kommune: str) -> str | None:
    """What the move is to `kommune`: "within", "into", "outOf", or None when it does not concern it."""
    previous, new = _same(previous_kommune, kommune), _same(new_kommune, kommune)
    if previous and new:
        return "within"
    if new:
        return "into"
    if previous:
        return "outOf"
    return None
