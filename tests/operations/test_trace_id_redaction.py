"""Log redaction keeps W3C trace ids whole (they often hold an 11-digit run by chance), and nothing else."""

from __future__ import annotations

from ops_bus import operations_bus  # noqa: F401  (puts tests/routing on the path)
from routing_events import synthetic_number

from agents.redaction import REDACTED, redact_personal_data

TRACE_ID_WITH_DIGIT_RUN = "9a0e46827680428e82f139c00f35282c"  # "46827680428": 11 digits
NUMBER = synthetic_number(3, 4, 51, 300)


def test_a_trace_id_is_kept_but_an_identity_number_anywhere_else_is_not():
    line = redact_personal_data(
        None,
        "info",
        {
            "event": "delivery.retry",
            "trace_id": TRACE_ID_WITH_DIGIT_RUN,
            "event_id": TRACE_ID_WITH_DIGIT_RUN,
            "note": f"trace {TRACE_ID_WITH_DIGIT_RUN}",
        },
    )
    assert line["trace_id"] == TRACE_ID_WITH_DIGIT_RUN
    assert REDACTED in line["event_id"] and REDACTED in line["note"]


def test_a_trace_id_key_not_of_the_trace_id_shape_or_holding_an_identity_number_is_redacted():
    for value in (NUMBER, f"{NUMBER}{'a' * 21}", f"{'a' * 10}{NUMBER}{'b' * 11}", TRACE_ID_WITH_DIGIT_RUN.upper()):
        assert redact_personal_data(None, "info", {"trace_id": value})["trace_id"] != value
