"""The redaction processor keeps identity numbers, names and addresses out of any log line."""

import json
import subprocess
import sys

from agents.redaction import REDACTED, redact_personal_data, redact_text

NUMBER = "03851598730"  # official synthetic vector (docs/domain.md §1)


def test_identity_numbers_are_removed_from_messages_and_values():
    out = redact_personal_data(None, "info", {"event": f"bad id {NUMBER} in feed", "detail": [NUMBER, 7]})
    assert NUMBER not in json.dumps(out)
    assert out["event"] == f"bad id {REDACTED} in feed"


def test_personal_keys_are_redacted_as_log_keys_and_inside_text():
    record = {"streetName": "Synteseveien", "houseNumber": 12, "givenName": "Kari", "eventId": "e-1"}
    out = redact_personal_data(None, "info", {"event": "routed", "record": record, "error": f"bad record {record!r}"})
    text = json.dumps(out)
    for secret in ("Synteseveien", "Kari"):
        assert secret not in text
    assert out["record"]["eventId"] == "e-1"
    assert "'eventId': 'e-1'" in out["error"]


def test_register_vocabulary_is_redacted_in_json_text():
    text = redact_text('{"bostedsadresse": {"adressenavn": "Prøvegata", "postnummer": "9990"}, "sekvensnummer": 5}')
    assert "Prøvegata" not in text and "9990" not in text
    assert '"sekvensnummer": 5' in text


def test_stdlib_logging_and_exceptions_pass_through_redaction():
    code = (
        "import logging\n"
        "from agents.logging import configure_logging\n"
        "configure_logging('info', 'json')\n"
        "try:\n"
        f"    raise ValueError({{'familyName': 'Nordmannsen', 'person': '{NUMBER}'}})\n"
        "except ValueError:\n"
        "    logging.getLogger('faust.agents').exception('agent crashed')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "agent crashed" in result.stderr
    assert "Nordmannsen" not in result.stderr and NUMBER not in result.stderr
