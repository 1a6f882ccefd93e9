"""A structlog processor that keeps personal data out of every log line, whatever code wrote it.

It removes:
- any run of 11 digits (a fødselsnummer or D-nummer, valid or not);
- the value of any key that names personal data: the catalog's fields classified
  `identifier`, `name`, `address` or `confidential`, and the register's own words for
  them (fornavn, bostedsadresse, ...); as log keys, and as `key: value` pairs inside
  text such as an exception message or the repr of a record.

W3C trace ids are kept: a `trace_id` whose value is exactly 32 lower-case hex digits (the only
shape agents.tracing produces or accepts) is random, and often holds an 11-digit run by chance;
it is still redacted whole when any 11 digits in it carry valid identity-number control digits.

Free text that is not keyed (a bare street name in a sentence) cannot be recognised, so code
must never write it; the redaction is the safety net, and the leak scans test both.
"""

from __future__ import annotations

import re
from functools import cache

from schemas.catalog import catalog
from schemas.identity import control_digits

REDACTED = "[redacted]"
IDENTITY_NUMBER = re.compile(r"(?<!\d)\d{11}(?!\d)")
TRACE_ID = re.compile(r"[0-9a-f]{32}")
PERSONAL_CLASSIFICATIONS = {"identifier", "name", "address", "confidential"}
# Folkeregister feed vocabulary (docs/folkeregister-feed.md) for the same kinds of data.
REGISTER_KEYS = {
    "folkeregisteridentifikator",
    "navn",
    "forrigenavn",
    "fornavn",
    "mellomnavn",
    "etternavn",
    "adresse",
    "bostedsadresse",
    "forrigebostedsadresse",
    "adressenavn",
    "husnummer",
    "husbokstav",
    "postnummer",
    "poststed",
    "kommunenummer",
    "foreldre",
    "mor",
    "far",
    "ektefelle",
    "barn",
}


@cache
def personal_keys() -> frozenset[str]:
    """Lower-cased key names whose values are personal data."""
    cat = catalog()
    keys = set(REGISTER_KEYS)
    for event_type in cat.event_types():
        for field in cat.fields(event_type):
            if field.classification in PERSONAL_CLASSIFICATIONS:
                keys.add(field.path.rsplit(".", 1)[-1].lower())
    # Parts of named records (an Address's streetName, a PersonName's givenName).
    keys |= {
        "streetname",
        "housenumber",
        "houseletter",
        "unitnumber",
        "postalcode",
        "postaltown",
        "givenname",
        "middlename",
        "familyname",
        "person",
        "identitynumber",
    }
    return frozenset(keys)


@cache
def _keyed_value_pattern() -> re.Pattern:
    names = "|".join(sorted(map(re.escape, personal_keys()), key=len, reverse=True))
    # `'key': 'v'`, `"key": "v"`, `key=v`, and a nested dict/list value up to its closing bracket.
    return re.compile(
        rf"""(?P<key>['"]?(?i:{names})['"]?\s*[:=]\s*)(?P<value>'[^']*'|"[^"]*"|\{{[^{{}}]*\}}|\[[^\[\]]*\]|[^,;)}}\]\s]+)"""
    )


def redact_text(text: str) -> str:
    text = _keyed_value_pattern().sub(lambda m: m.group("key") + REDACTED, text)
    return IDENTITY_NUMBER.sub(REDACTED, text)


def _redact(value):
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: REDACTED if str(k).lower() in personal_keys() else _redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return (
            IDENTITY_NUMBER.sub(REDACTED, str(value))
            if isinstance(value, int) and not isinstance(value, bool)
            else value
        )
    return redact_text(repr(value))


def redact_personal_data(logger, method_name, event_dict: dict) -> dict:
    """structlog processor: run after exceptions are formatted, before rendering."""
    return {
        key: value if _is_trace_id(key, value) else REDACTED if key.lower() in personal_keys() else _redact(value)
        for key, value in event_dict.items()
    }


def _is_trace_id(key: str, value) -> bool:
    if key != "trace_id" or not isinstance(value, str) or TRACE_ID.fullmatch(value) is None:
        return False
    windows = (value[i : i + 11] for i in range(len(value) - 10))
    return not any(
        w.isdigit() and w[9:] in (control_digits(w[:9]), control_digits(w[:9], rule_2032=True)) for w in windows
    )
