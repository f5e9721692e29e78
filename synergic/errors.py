"""Errors meant for the person running synergic.

A :class:`SynergicError` carries one line that says what is wrong, which file or key, and what to
do. The command line prints it without a traceback (``--debug`` shows one) and exits non-zero.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


INTERRUPTED_EXIT_CODE = 130
"""The exit status of a command stopped by Ctrl-C (SIGINT): 128 + 2, as shells report it."""


class SynergicError(Exception):
    """A user-facing error: its message is one self-contained line."""

    exit_code: int = 1
    """The command line's exit status for this error (:data:`INTERRUPTED_EXIT_CODE` for a stop
    by Ctrl-C)."""


class UnknownNameError(SynergicError, KeyError):
    """A name that is not in a registry (or a key that is not in a recipe)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates most similar to ``name``, best first (case-insensitive)."""
    candidates = list(candidates)
    lowered = {c.lower(): c for c in candidates}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    prefix = [c for c in candidates if c.lower().startswith(name.lower()) and c.lower() not in hits]
    return [lowered[h] for h in hits] + prefix[: max(0, n - len(hits))]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` or an empty string."""
    hits = closest(name, candidates, n=1)
    return f" (did you mean '{hits[0]}'?)" if hits else ""


_COLOUR_CODES = re.compile(r"\x1b\[[0-9;]*m")


def first_line(error: BaseException | str, limit: int = 200) -> str:
    """The first non-empty line of an error's message (another library's, usually), cut at a word
    boundary to at most ``limit`` characters with ``...``: what a one-line message may quote.

    Libraries' messages run to many lines (SQLAlchemy appends the SQL statement and its
    parameters, PyTorch a C++ trace); only the first line says what went wrong. Terminal colour
    codes (safetensors, huggingface_hub) are dropped. An empty message gives the exception's type
    name.
    """
    text = _COLOUR_CODES.sub("", str(error))
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not line:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    if len(line) <= limit:
        return line
    cut = line[: limit - 3]
    if " " in cut and not line[limit - 3].isspace():
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:([{") + "..."


def describe_error(error: BaseException, limit: int = 200) -> str:
    """``Type: first line`` of ``error`` (:func:`first_line`), or its type name alone when its
    message is empty: a third-party exception as one of our one-line messages may quote it."""
    line = first_line(error, limit)
    name = type(error).__name__
    return name if line == name or not line else f"{name}: {line}"
