"""The helpers that quote another library's exception in synergic's one-line messages."""

from __future__ import annotations

import pytest

from synergic.errors import describe_error, first_line


def test_first_line_keeps_the_first_non_empty_line():
    error = RuntimeError("\n  (sqlite3.OperationalError) no such table: runs  \n[SQL: SELECT *]")
    assert first_line(error) == "(sqlite3.OperationalError) no such table: runs"
    assert describe_error(error) == (
        "RuntimeError: (sqlite3.OperationalError) no such table: runs"
    )


@pytest.mark.parametrize("limit", [12, 20, 31, 40])
def test_a_long_line_is_cut_at_a_word_boundary_within_the_limit(limit):
    text = "Model registry functionality is unavailable; got unsupported URI"
    cut = first_line(ValueError(text), limit)
    assert len(cut) <= limit and cut.endswith("...")
    kept = cut.removesuffix("...")
    assert text.startswith(kept) and text[len(kept)] == " "  # whole words only
    assert not kept.endswith((" ", ";", ","))


def test_a_word_longer_than_the_limit_is_cut_inside_it():
    assert first_line("x" * 300, 20) == "x" * 17 + "..."


def test_short_lines_colour_codes_and_empty_messages():
    assert first_line("exactly ten", 11) == "exactly ten"
    assert first_line(OSError("\x1b[31mHeader too large\x1b[0m")) == "Header too large"
    assert describe_error(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert describe_error(ValueError("\n \n")) == "ValueError"
    assert first_line("") == ""
