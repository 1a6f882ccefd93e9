"""Scan a demo run's logs for personal data: identity numbers and the addresses of protected persons.

    streets = protected_street_names(feed.documents, feed.protection_of_event)
    findings = scan_text("worker.log", text, streets)      # [] when the log is clean

- Identity numbers: any run of exactly 11 digits. Inside a longer lower-case hex token (a trace
  or span id, a UUID's last group: random hex, which holds 11 digits in a row by chance) a run
  counts only when it carries valid identity-number control digits, the rule the log redaction
  (agents/redaction.py) applies to trace ids.
- Protected addresses: the street names (`adressenavn`) found in the event documents of every
  person the generator made fortrolig or strengt fortrolig at any point in the year, matched as
  whole words, case-insensitively, also where a JSON log line escapes their letters (`\\u00f8`).

A finding names the log, the line number and the kind, never the value it found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from connectors.folkeregister.feed_format import EventDocument
from schemas.identity import control_digits

PROTECTED = frozenset({"fortrolig", "strengtFortrolig", "strengtFortroligUtland"})
IDENTITY_NUMBER = "identity_number"
PROTECTED_ADDRESS = "protected_address"

_ELEVEN_DIGITS = re.compile(r"(?<!\d)\d{11}(?!\d)")
_HEX = frozenset("0123456789abcdef")
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


@dataclass(frozen=True)
class Finding:
    source: str  # the log's name
    line: int  # 1-based
    kind: str  # IDENTITY_NUMBER or PROTECTED_ADDRESS


def protected_street_names(documents: Iterable[EventDocument], protection_of_event: Mapping[str, str]) -> frozenset[str]:
    """Every street name in the documents of persons who are fortrolig or strengt fortrolig in any document."""
    documents = list(documents)
    protected = {d.folkeregisteridentifikator for d in documents if protection_of_event.get(d.hendelsesdokument) in PROTECTED}
    streets: set[str] = set()
    for document in documents:
        if document.folkeregisteridentifikator in protected:
            streets |= set(_street_names(document.opplysninger))
    return frozenset(streets)


def _street_names(value) -> Iterable[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "adressenavn" and isinstance(inner, str) and inner:
                yield inner
            else:
                yield from _street_names(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _street_names(inner)


def _is_identity_number(line: str, match: re.Match) -> bool:
    start, end = match.span()
    inside_hex = (start > 0 and line[start - 1] in _HEX) or (end < len(line) and line[end] in _HEX)
    if not inside_hex:
        return True
    digits = match.group()
    return digits[9:] in (control_digits(digits[:9]), control_digits(digits[:9], rule_2032=True))


def _street_pattern(streets: Iterable[str]) -> re.Pattern | None:
    names = sorted({s for s in streets if s}, key=len, reverse=True)
    if not names:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, names)) + r")(?!\w)", re.IGNORECASE)


def scan_text(source: str, text: str, streets: Iterable[str]) -> list[Finding]:
    """The lines of `text` that hold an identity number or a protected person's street name."""
    street = _street_pattern(streets)
    findings = []
    for number, line in enumerate(text.splitlines(), start=1):
        if any(_is_identity_number(line, m) for m in _ELEVEN_DIGITS.finditer(line)):
            findings.append(Finding(source, number, IDENTITY_NUMBER))
        if street is not None and street.search(_JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), line)):
            findings.append(Finding(source, number, PROTECTED_ADDRESS))
    return findings
