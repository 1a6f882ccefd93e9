"""Unique synthetic identity numbers (docs/domain.md §1), allocated in vectorised batches.

Every number has 80 added to the month (synthetic, Tenor style) and, for D-numbers, 4
added to the first digit; the control digits are computed after. Uniqueness: one
counter of used individnummer per (kind, DDMMYY); individnummer whose control digits
cannot exist are skipped. The century is not encoded (docs/domain.md §1 says not to rely
on it); the birth date travels in its own field.

`control_digits_vectorised` is the numpy form of `schemas.identity.control_digits`
(the tests hold the two equal); it exists because 5.5 M calls in Python take too long.
"""

from __future__ import annotations

import numpy as np

from schemas.identity import W1, W2

EPOCH = np.datetime64("1970-01-01", "D")
_KEYS_PER_KIND = 100 * 12 * 31
MAX_INDIVIDNUMMER = 999


class IdentityNumbersExhausted(RuntimeError):
    """More persons share one birth date than the individnummer series can number."""


def date_parts(birth_days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(day, month, year) arrays for birth dates given as days since 1970-01-01."""
    dates = EPOCH + birth_days.astype("timedelta64[D]")
    months = dates.astype("datetime64[M]")
    year = months.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (dates - months.astype("datetime64[D]")).astype(np.int64) + 1
    return day, month, year


def control_digits_vectorised(first9: np.ndarray, *, rule_2032: bool) -> tuple[np.ndarray, np.ndarray]:
    """k1, k2 for an (n, 9) digit array; -1 where no valid pair exists. Same choice as control_digits()."""
    base1 = first9 @ np.array(W1)
    base2 = first9 @ np.array(W2[:9])
    k1_out = np.full(len(first9), -1, dtype=np.int64)
    k2_out = np.full(len(first9), -1, dtype=np.int64)
    for remainder in (0, 1, 2, 3) if rule_2032 else (0,):
        k1 = (remainder - base1) % 11
        k2 = (11 - (base2 + W2[9] * k1) % 11) % 11
        take = (k1_out < 0) & (k1 != 10) & (k2 != 10)
        k1_out[take], k2_out[take] = k1[take], k2[take]
    return k1_out, k2_out


class IdentityAllocator:
    """Hands out unique synthetic numbers (as int64: format with f"{n:011d}")."""

    def __init__(self) -> None:
        self._next_individ = np.zeros(2 * _KEYS_PER_KIND, dtype=np.int16)

    def allocate(self, birth_days: np.ndarray, d_number: np.ndarray, *, rule_2032: bool = False) -> np.ndarray:
        birth_days = np.asarray(birth_days, dtype=np.int64)
        d_number = np.asarray(d_number, dtype=bool)
        day, month, year = date_parts(birth_days)
        shown_day = day + 40 * d_number
        shown_month = month + 80
        yy = year % 100
        keys = d_number * _KEYS_PER_KIND + yy * 372 + (month - 1) * 31 + (day - 1)
        date_part = (shown_day * 10_000 + shown_month * 100 + yy).astype(np.int64)

        result = np.zeros(len(birth_days), dtype=np.int64)
        pending = np.arange(len(birth_days))
        while len(pending):
            individ = self._take_individnummer(keys[pending])
            first9 = _digits(date_part[pending] * 1000 + individ, 9)
            k1, k2 = control_digits_vectorised(first9, rule_2032=rule_2032)
            ok = k1 >= 0
            result[pending[ok]] = (date_part[pending[ok]] * 1000 + individ[ok]) * 100 + k1[ok] * 10 + k2[ok]
            pending = pending[~ok]
        return result

    def _take_individnummer(self, keys: np.ndarray) -> np.ndarray:
        """Consecutive unused individnummer for each key, in the order the keys come."""
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        group_start = np.r_[0, np.flatnonzero(np.diff(sorted_keys)) + 1]
        group_sizes = np.diff(np.r_[group_start, len(keys)])
        rank = np.arange(len(keys)) - np.repeat(group_start, group_sizes)
        individ_sorted = self._next_individ[sorted_keys].astype(np.int64) + rank
        if len(individ_sorted) and individ_sorted.max() > MAX_INDIVIDNUMMER:
            raise IdentityNumbersExhausted("individnummer series exhausted for a birth date")
        self._next_individ[sorted_keys[group_start]] += group_sizes.astype(np.int16)
        individ = np.empty_like(individ_sorted)
        individ[order] = individ_sorted
        return individ


def _digits(numbers: np.ndarray, width: int) -> np.ndarray:
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (numbers[:, None] // powers) % 10


def format_identity(number: int) -> str:
    return f"{int(number):011d}"
