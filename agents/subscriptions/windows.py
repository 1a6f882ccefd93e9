"""Delivery windows: when a subscription takes deliveries, in Norwegian time (Europe/Oslo).

    delivery: {kind: webhook, ..., windows: [{days: [mon, tue, wed, thu, fri], start: "06:00", end: "20:00"}]}

Outside every window its deliveries are held, in order, in the pending topic, as for a paused
subscription, and go out when a window opens, purges first (agents/delivery/dispatcher.py).
No windows (the default): always open. A window whose `end` is not after its `start` runs past
midnight into the next day (`start: "22:00", end: "02:00"` on `fri` is Friday 22:00 to Saturday
02:00). Times are wall-clock times in Norway, so a window keeps its hours across summer time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

NORWAY = ZoneInfo("Europe/Oslo")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    days: tuple[Day, ...] = Field(DAYS, min_length=1, description="the days it starts on (default every day)")
    start: time = Field(description="local time in Norway it opens, HH:MM (or HH:MM:SS)")
    end: time = Field(description="local time it closes; not after `start`: the next day")

    @field_validator("start", "end")
    @classmethod
    def _wall_clock(cls, moment: time) -> time:
        if moment.tzinfo is not None:  # a zone would make it another kind of time: refused, not mixed
            raise ValueError("a local time in Norway, without a zone (HH:MM)")
        return moment

    def open_at(self, local: datetime) -> bool:
        day, now = DAYS[local.weekday()], local.time()
        if self.start < self.end:
            return day in self.days and self.start <= now < self.end
        yesterday = DAYS[(local.weekday() - 1) % 7]
        return (day in self.days and now >= self.start) or (yesterday in self.days and now < self.end)


def is_open(windows: tuple[Window, ...], at: float) -> bool:
    """Whether deliveries may go out at `at` (epoch seconds); always, without windows."""
    if not windows:
        return True
    local = datetime.fromtimestamp(at, UTC).astimezone(NORWAY)
    return any(window.open_at(local) for window in windows)


def next_change(windows: tuple[Window, ...], at: float) -> float | None:
    """The first moment after `at` when `is_open` changes (epoch seconds); None without windows."""
    if not windows:
        return None
    state = is_open(windows, at)
    today = datetime.fromtimestamp(at, UTC).astimezone(NORWAY).date()
    days = [today + timedelta(days=offset) for offset in range(-1, 9)]
    # Where the state can change: each window's start and end (both readings of a wall-clock time
    # the autumn change repeats) and the moments the clock itself jumps (summer time).
    edges = {
        datetime.combine(day, moment, NORWAY).replace(fold=fold).timestamp()
        for day in days
        for window in windows
        for moment in (window.start, window.end)
        for fold in (0, 1)
    }
    edges |= _clock_changes(days[0], days[-1])
    for edge in sorted(edges):
        if edge > at and is_open(windows, edge) != state:
            return edge
    return None  # open or closed at every edge within the week: it never changes


def _clock_changes(first: date, last: date) -> set[float]:
    """The moments between the two days when Norway's UTC offset changes (whole UTC hours)."""
    start = datetime.combine(first, time(0), UTC).timestamp()
    hours = int((datetime.combine(last, time(0), UTC).timestamp() - start) // 3600) + 24
    offsets = [datetime.fromtimestamp(start + h * 3600, UTC).astimezone(NORWAY).utcoffset() for h in range(hours + 1)]
    return {start + h * 3600 for h in range(1, hours + 1) if offsets[h] != offsets[h - 1]}


def describe(at: float) -> str:
    """`at` as Norwegian local time, for status lines."""
    return datetime.fromtimestamp(at, UTC).astimezone(NORWAY).isoformat(timespec="seconds")
