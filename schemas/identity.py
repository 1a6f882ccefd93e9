"""Norwegian person identifiers (folkeregisteridentifikator): classification and check digits.

Rules from docs/domain.md §1 (Skatteetaten): 11 digits DDMMYY iii k1 k2.
- D-nummer: 4 added to the first digit (day 41-71).
- Synthetic (Tenor) numbers: 80 added to the month (81-92); both may combine.
- H-nummer: 40 added to the month (41-52); never accepted as a person id on the bus.
- Numbers issued from 2032 let k1 leave a remainder of 0-3 under w1; k2 is unchanged.

Nothing here ever puts the number itself into an error message.
"""

from __future__ import annotations

import calendar
import enum
import re
from dataclasses import dataclass
from operator import mul

W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)

# An identity number's shape inside free text: 11 digits that are not part of a longer hex token.
# A UUID or a trace id holds an 11-digit run by chance now and then; that is not a person.
IDENTITY_NUMBER_IN_TEXT = re.compile(r"(?<![0-9A-Fa-f])\d{11}(?![0-9A-Fa-f])")


class IdentityKind(enum.StrEnum):
    FNR = "fnr"  # fødselsnummer
    DNR = "dnr"  # D-nummer


@dataclass(frozen=True)
class Identity:
    kind: IdentityKind
    synthetic: bool
    day: int
    month: int
    year_2digits: int


class InvalidIdentity(ValueError):
    """A rejected identifier. `reason` is a stable code; the message never contains the number."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _weighted(weights: tuple[int, ...], digits: list[int]) -> int:
    return sum(map(mul, weights, digits))  # (stops at the shorter; a third of a generator's time)


def k2_for(first10: str) -> int | None:
    """The second control digit for 10 digits, or None where the number can never be issued."""
    k2 = (11 - _weighted(W2, [int(c) for c in first10]) % 11) % 11
    return None if k2 == 10 else k2


def control_digits(first9: str, *, rule_2032: bool = False) -> str | None:
    """Control digits k1 k2 for 9 digits; None where no valid pair exists.

    With rule_2032 the first k1 that leaves a remainder of 0-3 (the 2032 rule) and gives
    a valid k2 is chosen, so numbers beyond the classic series can be generated.
    """
    base = _weighted(W1, [int(c) for c in first9])
    remainders = (0, 1, 2, 3) if rule_2032 else (0,)
    for remainder in remainders:
        k1 = (remainder - base) % 11
        if k1 == 10:
            continue
        k2 = k2_for(first9 + str(k1))
        if k2 is not None:
            return f"{k1}{k2}"
    return None


def _k1_ok(digits: list[int]) -> bool:
    return (_weighted(W1, digits[:9]) + digits[9]) % 11 in (0, 1, 2, 3)


def _k2_ok(digits: list[int]) -> bool:
    return (_weighted(W2, digits[:10]) + digits[10]) % 11 == 0


def has_valid_control_digits(number: str) -> bool:
    """Whether 11 digits carry valid control digits (k1 by the 2032 rule, k2), whatever their date:
    the test the privacy scan applies to any 11-digit run it finds."""
    digits = [int(c) for c in number]
    return len(digits) == 11 and _k1_ok(digits) and _k2_ok(digits)


def parse_identity(number: str) -> Identity:
    """Classify an identifier or raise InvalidIdentity with a stable reason code."""
    if not isinstance(number, str) or len(number) != 11 or not number.isascii() or not number.isdigit():
        raise InvalidIdentity("identity.format", "identity number must be exactly 11 digits")
    digits = [int(c) for c in number]
    if not _k1_ok(digits):
        raise InvalidIdentity("identity.checksum", "identity number fails the first control digit (k1)")
    if not _k2_ok(digits):
        raise InvalidIdentity("identity.checksum", "identity number fails the second control digit (k2)")

    day, month, yy = int(number[0:2]), int(number[2:4]), int(number[4:6])
    kind = IdentityKind.FNR
    if day > 40:
        kind, day = IdentityKind.DNR, day - 40
    synthetic = False
    if month > 80:
        synthetic, month = True, month - 80
    elif month > 40:
        raise InvalidIdentity("identity.h_number", "H-numbers (help numbers) are not person identifiers on the bus")
    if not 1 <= month <= 12:
        raise InvalidIdentity("identity.date", "identity number has no valid month")
    # The century is not reliably encoded (docs/domain.md §1), so the date must exist in 19yy or 20yy;
    # 29 February thus needs yy to be a leap year in one of them.
    if not any(day <= calendar.monthrange(century + yy, month)[1] for century in (1900, 2000)) or day < 1:
        raise InvalidIdentity("identity.date", "identity number has no valid calendar date")
    return Identity(kind=kind, synthetic=synthetic, day=day, month=month, year_2digits=yy)


def is_valid_identity(number: str) -> bool:
    try:
        parse_identity(number)
    except InvalidIdentity:
        return False
    return True
