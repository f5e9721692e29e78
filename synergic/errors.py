"""Errors meant for the person running synergic.

A :class:`SynergicError` carries one line that says what is wrong, which file or key, and what to
do. The command line prints it without a traceback (``--debug`` shows one) and exits non-zero.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SynergicError(Exception):
    """A user-facing error: its message is one self-contained line."""


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
