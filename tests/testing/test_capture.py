"""BoundedCapture keeps the head and the tail, counts what it drops, and decodes safely."""

from __future__ import annotations

import pytest

from attuned.testing.capture import BoundedCapture


def fed(limit: int, *chunks: bytes) -> BoundedCapture:
    capture = BoundedCapture(limit)
    for chunk in chunks:
        capture.append(chunk)
    return capture


def test_output_within_the_limit_is_kept_whole():
    capture = fed(10, b"abc", b"defghij")

    assert capture.text() == "abcdefghij"
    assert not capture.truncated


def test_output_over_the_limit_keeps_head_and_tail_with_a_marker():
    capture = fed(10, *(bytes([byte]) for byte in b"0123456789abcdefghij"))

    assert capture.truncated
    assert capture.total_bytes == 20
    assert capture.text() == "01234\n[... attuned: 10 bytes elided ...]\nfghij"


def test_a_smaller_limit_can_be_asked_for_when_storing():
    capture = fed(1000, b"0123456789" * 3)

    assert capture.text() == "0123456789" * 3
    assert capture.text(10) == "01234\n[... attuned: 20 bytes elided ...]\n56789"
    assert capture.text(40) == "0123456789" * 3


def test_smaller_limit_after_truncation_counts_all_elided_bytes():
    capture = fed(20, b"a" * 10 + b"m" * 100 + b"z" * 10)

    assert capture.text(4) == "aa\n[... attuned: 116 bytes elided ...]\nzz"


def test_large_chunks_keep_the_true_tail():
    capture = fed(8, b"head" + b"." * 5000, b"." * 5000 + b"tail")

    assert capture.text() == "head\n[... attuned: 10,000 bytes elided ...]\ntail"


def test_invalid_utf8_becomes_replacement_characters():
    assert fed(100, b"ok \xff\xfe \xc3").text() == "ok \ufffd\ufffd \ufffd"


def test_a_character_split_by_the_elision_is_replaced_not_fatal():
    capture = fed(4, "é".encode() * 10)

    head, _, tail = capture.text().partition("\n[... attuned: ")
    assert head == "é"
    assert tail.endswith("é")


def test_limit_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        BoundedCapture(0)
