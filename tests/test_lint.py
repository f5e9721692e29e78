"""pyflakes finds nothing in the code: no unused import or variable, no undefined name (an
undefined name is a NameError waiting for the one path that reaches it)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKED = ("synergic", "tests", "plugins", "benchmarks")


def test_pyflakes_reports_nothing():
    api = pytest.importorskip("pyflakes.api")
    from pyflakes.reporter import Reporter

    out, err = io.StringIO(), io.StringIO()
    found = api.checkRecursive([str(REPO / name) for name in CHECKED], Reporter(out, err))
    assert (found, err.getvalue()) == (0, ""), out.getvalue()
