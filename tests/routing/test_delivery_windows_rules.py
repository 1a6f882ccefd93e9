"""Delivery windows in Norwegian time (agents/subscriptions/windows.py): open, closed, past
midnight, across the change to summer time, and when the state next changes."""

from __future__ import annotations

from datetime import datetime, time

import pytest
from pydantic import ValidationError

from agents.subscriptions.windows import NORWAY, Window, is_open, next_change

WORKDAYS = (Window(days=("mon", "tue", "wed", "thu", "fri"), start=time(6), end=time(20)),)
NIGHT = (Window(days=("fri",), start=time(22), end=time(2)),)


def _at(*parts: int) -> float:
    return datetime(*parts, tzinfo=NORWAY).timestamp()


@pytest.mark.parametrize(
    ("windows", "moment", "expected"),
    [
        (WORKDAYS, (2026, 12, 7, 6, 0), True),  # Monday 06:00: opens
        (WORKDAYS, (2026, 12, 7, 19, 59), True),
        (WORKDAYS, (2026, 12, 7, 20, 0), False),  # closes at 20:00
        (WORKDAYS, (2026, 12, 5, 12, 0), False),  # Saturday
        (NIGHT, (2026, 12, 4, 23, 0), True),  # Friday 23:00
        (NIGHT, (2026, 12, 5, 1, 59), True),  # Saturday 01:59: Friday's window
        (NIGHT, (2026, 12, 5, 2, 0), False),
        (NIGHT, (2026, 12, 4, 1, 0), False),  # Friday 01:00: Thursday has no window
        ((), (2026, 12, 5, 3, 0), True),  # no windows: always
    ],
)
def test_a_window_is_open_on_its_days_and_hours_in_norway(windows, moment, expected):
    assert is_open(windows, _at(*moment)) is expected


def test_the_next_change_is_the_next_opening_or_closing():
    assert next_change(WORKDAYS, _at(2026, 12, 5, 12, 0)) == _at(2026, 12, 7, 6, 0)  # Saturday: Monday 06:00
    assert next_change(WORKDAYS, _at(2026, 12, 7, 9, 0)) == _at(2026, 12, 7, 20, 0)
    assert next_change(NIGHT, _at(2026, 12, 4, 23, 0)) == _at(2026, 12, 5, 2, 0)
    assert next_change((), _at(2026, 12, 4, 23, 0)) is None


def test_a_window_keeps_its_wall_clock_hours_across_summer_time():
    # 29 March 2026: clocks go from 02:00 to 03:00 in Norway. 06:00 is 04:00 UTC after, 05:00 UTC before.
    before, after = _at(2026, 3, 27, 6, 0), _at(2026, 3, 30, 6, 0)
    assert datetime.fromtimestamp(before).astimezone(NORWAY).hour == 6
    assert (after - before) == 3 * 86400 - 3600
    assert is_open(WORKDAYS, before) and is_open(WORKDAYS, after)
    assert next_change(WORKDAYS, _at(2026, 3, 28, 12, 0)) == after


def test_a_window_names_its_days_and_times_plainly():
    with pytest.raises(ValidationError):
        Window(days=("monday",), start=time(6), end=time(20))
    with pytest.raises(ValidationError):
        Window.model_validate({"start": "6 am", "end": "20:00"})
    assert Window.model_validate({"start": "06:00", "end": "20:00:30"}).days == (
        "mon", "tue", "wed", "thu", "fri", "sat", "sun"
    )  # fmt: skip


def test_a_time_with_a_zone_is_refused():
    """Found in review: `06:00Z` was accepted, and comparing it with Norway's wall clock crashed the
    delivery stage for every tenant."""
    with pytest.raises(ValidationError, match="without a zone"):
        Window.model_validate({"start": "06:00Z", "end": "20:00"})


def _brute_force_change(windows, at: float) -> float | None:
    state = is_open(windows, at)
    for minute in range(1, 8 * 24 * 60):
        moment = (int(at) // 60 + minute) * 60
        if is_open(windows, moment) != state:
            return moment
    return None


@pytest.mark.parametrize(
    ("window", "at"),
    [
        # Found in review: on 29 March 2026 01:00-02:30 closes at 03:00 (the clock jumps), not 03:30.
        (Window(start=time(1), end=time(2, 30)), (2026, 3, 29, 1, 30)),
        # ... and on 25 October 2026 02:30-06:00 closes again when 02:59 CEST becomes 02:00 CET.
        (Window(start=time(2, 30), end=time(6)), (2026, 10, 25, 2, 45)),
        (Window(start=time(2, 30), end=time(6)), (2026, 10, 24, 23, 0)),
        (Window(days=("sat", "sun"), start=time(22), end=time(2, 30)), (2026, 3, 28, 21, 0)),
        (Window(days=("sat",), start=time(2, 15), end=time(2, 45)), (2026, 10, 24, 12, 0)),
    ],
)
def test_the_next_change_is_exact_on_the_days_the_clock_changes(window, at):
    moment = _at(*at)
    while moment < _at(*at) + 2 * 86400:  # follow the changes for two days, each against brute force
        expected = _brute_force_change((window,), moment)
        assert next_change((window,), moment) == expected, datetime.fromtimestamp(moment, NORWAY)
        if expected is None:
            break
        moment = expected
