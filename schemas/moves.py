"""Move scope: within a kommune, or between kommuner, and what a move means to one kommune."""

from __future__ import annotations


def move_scope(previous_kommune: str | None, new_kommune: str) -> str:
    """The MoveScope symbol stored on a Move event. An unknown previous kommune counts as between."""
    return "withinKommune" if previous_kommune == new_kommune else "betweenKommuner"


def scope_for(previous_kommune: str | None, new_kommune: str | None, kommune: str) -> str | None:
    """What the move is to `kommune`: "within", "into", "outOf", or None when it does not concern it."""
    if previous_kommune == kommune and new_kommune == kommune:
        return "within"
    if new_kommune == kommune:
        return "into"
    if previous_kommune == kommune:
        return "outOf"
    return None
