"""Dead-letter headers: the reason travels beside the unchanged original, and reads back."""

import pytest

from connectors.dead_letters import DeadLetter
from schemas.pseudonym import pseudonym


def test_headers_keep_the_originals_and_read_back():
    letter = DeadLetter(
        "wire.truncated", "Avro body ends early", "ingest", topic="samband-ingest", partition=2, offset=41
    )
    headers = letter.headers([("traceparent", b"00-abc-def-01"), ("samband-dlq-reason", b"stale")])

    assert ("traceparent", b"00-abc-def-01") in headers
    assert [v for k, v in headers if k == "samband-dlq-reason"] == [b"wire.truncated"]
    assert DeadLetter.from_headers(headers) == letter


def test_a_dead_letter_reads_back_whatever_bytes_the_original_headers_held():
    """Found in review: one source record with a binary header made `samband status` crash."""
    letter = DeadLetter("wire.not_avro", "not Avro", "source", topic="samband-ingest", partition=1, offset=7)
    headers = letter.headers([("origin", b"\xff\xfe binary"), ("empty", None)])  # type: ignore[list-item]
    assert DeadLetter.from_headers(headers) == letter
    garbled = [("samband-dlq-stage", b"\xff"), ("samband-dlq-offset", b"x1"), ("samband-dlq-reason", b"r\xff"),
               ("samband-dlq-partition", "²".encode())]  # fmt: skip
    read = DeadLetter.from_headers(garbled)
    assert (read.stage, read.offset, read.partition, read.reason) == ("ingest", None, None, "r\ufffd")


def test_delivery_dead_letter_names_its_subscription():
    letter = DeadLetter("delivery.rejected", "receiver answered 422", "deliver", subscription="alta-bibliotek")
    assert DeadLetter.from_headers(letter.headers()).subscription == "alta-bibliotek"


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="stage must be one of"):
        DeadLetter("x", "y", "somewhere")


def test_pseudonym_is_stable_keyed_and_hides_the_number():
    number = "03851598730"  # official synthetic vector (docs/domain.md §1)
    first, again = pseudonym(number, b"key-1"), pseudonym(number, b"key-1")
    assert first == again and len(first) == 32
    assert pseudonym(number, b"key-2") != first
    assert number not in first
