"""Peer text is escaped and capped before it reaches a log or a stored detail."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ewsgate.textsafe import safe_json, safe_text


def test_control_characters_and_ansi_escapes_become_visible_escapes() -> None:
    assert safe_text("ok\x1b[31mred\x1b[0m") == "ok\\x1b[31mred\\x1b[0m"
    assert safe_text("line\nERROR forged\r") == "line\\x0aERROR forged\\x0d"
    assert safe_text("bell\x07 del\x7f nul\x00 c1\x9b") == "bell\\x07 del\\x7f nul\\x00 c1\\x9b"


def test_format_and_invisible_characters_are_escaped_but_letters_are_kept() -> None:
    assert safe_text("abc\u202etxt.exe") == "abc\\u202etxt.exe"
    assert safe_text("zero\u200bwidth\u2028sep") == "zero\\u200bwidth\\u2028sep"
    assert safe_text("Drucker Büro 東京 ✓") == "Drucker Büro 東京 ✓"


def test_a_backslash_is_escaped_so_an_escape_always_means_the_peer_sent_that_character() -> None:
    assert safe_text("\\x1b") == "\\\\x1b"


def test_bytes_are_decoded_and_undecodable_bytes_shown_as_hex() -> None:
    assert safe_text(b"serial\xff\xfe\x1bX") == "serial\\xff\\xfe\\x1bX"
    assert safe_text("é".encode()) == "é"


def test_10_kb_of_text_is_cut_to_the_limit_with_a_count_of_what_was_left_out() -> None:
    out = safe_text("A" * 10_000, limit=200)
    assert len(out) == 200 and out.endswith(f"… [{10_000 - out.count('A')} more]")
    assert out.startswith("A" * 150)
    escaped = safe_text("\x1b" * 10_000, limit=200)
    assert len(escaped) <= 200 and "\x1b" not in escaped and escaped.endswith("more]")


def test_none_and_other_values() -> None:
    assert safe_text(None) == "" and safe_text(42) == "42"
    with pytest.raises(ValueError):
        safe_text("x", limit=3)


def test_json_from_a_peer_has_every_string_and_key_escaped() -> None:
    hostile = {"detail\x1b": ["\x1b[2J", {"deep": "x" * 5000}], "n": 3, "ok": True, "none": None}
    assert safe_json(hostile, limit=100) == {
        "detail\\x1b": ["\\x1b[2J", {"deep": "x" * 87 + "… [4913 more]"}], "n": 3, "ok": True,
        "none": None}
    assert safe_json({"a": {"b": {"c": 1}}}, depth=2) == {"a": {"b": None}}


@given(st.text(max_size=3000), st.integers(min_value=32, max_value=800))
def test_output_is_always_printable_and_within_the_limit(text: str, limit: int) -> None:
    out = safe_text(text, limit=limit)
    assert len(out) <= limit
    assert all(ch == " " or ch.isprintable() for ch in out)
    if len(text) <= limit // 10 and all(ch.isprintable() and ch != "\\" for ch in text):
        assert out == text


def test_the_mark_fits_even_when_megabytes_are_left_out() -> None:
    out = safe_text("a" * 5_000_000, limit=32)
    assert len(out) <= 32 and out.endswith(f"… [{5_000_000 - out.count('a')} more]")
    assert len(safe_text(b"\x1b" * 5_000_000, limit=32)) <= 32
