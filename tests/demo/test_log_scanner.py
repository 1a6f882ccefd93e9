"""The log scanner (agents/demo/log_scan.py): what it counts as an identity number or a protected address."""

from __future__ import annotations

import json

from agents.demo.log_scan import IDENTITY_NUMBER, PROTECTED_ADDRESS, Finding, protected_street_names, scan_text
from connectors.folkeregister.feed_format import EventDocument
from schemas.identity import control_digits

VALID = "08816900086"  # synthetic fødselsnummer (month + 80) with valid control digits
assert control_digits(VALID[:9]) == VALID[9:]
STREETS = {"Bjørkegata", "Kirkeveien"}


def _kinds(text: str) -> list[tuple[int, str]]:
    return [(f.line, f.kind) for f in scan_text("x.log", text, STREETS)]


def test_any_eleven_digit_run_is_an_identity_number_and_the_finding_does_not_repeat_it():
    text = f'{{"event": "x"}}\nperson {VALID} moved\nid={VALID[:10]}9\n{{"n": "{VALID}"}}'
    findings = scan_text("worker.log", text, STREETS)
    assert [(f.line, f.kind) for f in findings] == [(2, IDENTITY_NUMBER), (3, IDENTITY_NUMBER), (4, IDENTITY_NUMBER)]
    assert findings[0] == Finding("worker.log", 2, IDENTITY_NUMBER) and VALID not in repr(findings)


def test_ten_or_twelve_digits_are_not_an_identity_number():
    assert _kinds("offset 1234567890 at 123456789012 ms") == []


def test_random_digits_inside_a_trace_id_are_ignored_but_a_valid_number_inside_hex_is_found():
    random_run = "12345678901"
    assert control_digits(random_run[:9]) != random_run[9:]
    assert _kinds(f'{{"trace_id": "ab{random_run}cdef0123456789abcdef0"}}') == []
    assert _kinds(f'{{"trace_id": "ab{VALID}cdef0123456789abcdef0"}}') == [(1, IDENTITY_NUMBER)]


def test_a_protected_street_is_found_as_a_word_in_any_case_and_json_escaped():
    assert _kinds("moved to Kirkeveien 4") == [(1, PROTECTED_ADDRESS)]
    assert _kinds("moved to KIRKEVEIEN 4") == [(1, PROTECTED_ADDRESS)]
    assert _kinds(json.dumps({"error": "Bjørkegata 12"})) == [(1, PROTECTED_ADDRESS)]  # "Bj\u00f8rkegata"
    assert _kinds("Kirkeveiene and Storgata") == []


def _document(n: int, person: str, protection: str, street: str) -> EventDocument:
    return EventDocument(n, f"doc-{n}", "endringIBostedsadresse", person, f"p-{person}", "2024-01-02T00:00:00Z",
                         "registrereNy", protection, {"bostedsadresse": {"vegadresse": {"adressenavn": street}}})


def test_protected_streets_are_every_street_of_a_person_protected_in_any_document():
    documents = [
        _document(1, "A", "ugradert", "Kirkeveien"),  # A before becoming fortrolig: still A's street
        _document(2, "A", "fortrolig", "Bjørkegata"),
        _document(3, "B", "strengtFortrolig", "Eikegata"),
        _document(4, "C", "ugradert", "Storgata"),
        _document(5, "D", "klientadresse", "Bekkevegen"),
    ]
    protection = {d.hendelsesdokument: d.adressebeskyttelse for d in documents}
    assert protected_street_names(documents, protection) == {"Kirkeveien", "Bjørkegata", "Eikegata"}
