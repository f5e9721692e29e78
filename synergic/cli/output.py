"""How commands print: consoles that read well in a terminal, a file or a pipe; ``--quiet`` and
``--json``; the metrics table.

In a terminal rich fits its output to the window. When stdout (or stderr) is a file or a pipe
there is no window: a console there is given a very wide line, so a table keeps its full column
names and cells on one row each, instead of rich's default 80 columns that cut ``ap_trapezoid``
to ``ap_trapez…`` and wrap rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import click

#: The line width of a console that writes to a file or a pipe: wide enough that nothing a
#: command prints is cut or wrapped (rich sizes a table to its content, not to this width).
UNBOUNDED_WIDTH = 100_000


def console(stderr: bool = False):
    """A rich console on stdout (or stderr): the terminal's width in a terminal, otherwise
    :data:`UNBOUNDED_WIDTH` and no colour codes."""
    from rich.console import Console

    made = Console(stderr=stderr, highlight=False)
    if made.is_terminal:
        return made
    return Console(stderr=stderr, highlight=False, width=UNBOUNDED_WIDTH, soft_wrap=False)


@dataclass(frozen=True)
class OutputMode:
    """What a command prints, from its ``--quiet`` and ``--json`` flags.

    ``quiet``: only errors and the final result (the run directory, the report's path, ...).
    ``json``: the result as one JSON document on stdout; everything else goes to stderr.
    """

    quiet: bool = False
    json: bool = False

    @property
    def chatty(self) -> bool:
        """Whether to print stage lines and progress (on stderr)."""
        return not self.quiet

    def emit_json(self, document: Any) -> None:
        click.echo(json.dumps(json_ready(document), indent=2, ensure_ascii=False))


def json_ready(value: Any) -> Any:
    """``value`` with paths as strings and NaN/inf as ``null`` (JSON has no NaN)."""
    from pathlib import PurePath

    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def output_options(function):
    """Add ``--quiet`` and ``--json``; the command receives ``output_mode: OutputMode``."""
    function = click.option(
        "--json", "as_json", is_flag=True,
        help="Print the result as JSON on stdout (progress and notes still go to stderr).",
    )(function)
    function = click.option(
        "--quiet", "-q", is_flag=True,
        help="Print only errors and the final result.",
    )(function)

    import functools

    @functools.wraps(function)
    def wrapper(*args, quiet: bool, as_json: bool, **kwargs):
        return function(*args, output_mode=OutputMode(quiet=quiet, json=as_json), **kwargs)

    return wrapper


def json_option(function):
    """Add only ``--json`` (for commands whose output is already just the result); the command
    receives ``output_mode: OutputMode``."""
    function = click.option(
        "--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.",
    )(function)

    import functools

    @functools.wraps(function)
    def wrapper(*args, as_json: bool, **kwargs):
        return function(*args, output_mode=OutputMode(json=as_json), **kwargs)

    return wrapper


def _format(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.4f}"


def _with_interval(value, interval) -> str:
    text = _format(value)
    if not interval or text == "n/a" or any(
        bound is None or not math.isfinite(bound) for bound in interval
    ):
        return text
    return f"{text} [{interval[0]:.2f}, {interval[1]:.2f}]"


def metrics_table(aggregate: dict, components: list[dict], title: str,
                  intervals: dict | None = None, component_intervals: list[dict] | None = None):
    """A rich table: one row for the aggregate, one per component, a column per metric; with
    ``intervals`` (metrics.json's ``test_ci``, ``test_components_ci``) a cell reads
    ``0.8123 [0.77, 0.85]``, the value and its 95 % interval."""
    from rich.table import Table

    intervals = intervals or {}
    component_intervals = component_intervals or []
    table = Table(title=title, title_justify="left")
    # In a narrow terminal a cell folds onto a second line rather than being cut with "…":
    # an interval cut in half cannot be read.
    table.add_column("model", overflow="fold", min_width=11)
    names = list(aggregate)
    for name in names:
        table.add_column(name, justify="right", overflow="fold")
    table.add_row("aggregate", *(_with_interval(aggregate[n], intervals.get(n)) for n in names))
    for k, component in enumerate(components):
        bounds = component_intervals[k] if k < len(component_intervals) else {}
        table.add_row(f"component {k + 1}",
                      *(_with_interval(component.get(n), bounds.get(n)) for n in names))
    return table


def comparison_line(aggregate: dict, components: list[dict], metric: str) -> str | None:
    """One sentence: how the aggregate's ``metric`` compares with each component's, e.g.
    ``the aggregate's AP is 0.7410 (components: 0.7012, 0.7533): below component 2``.

    ``metric``: the run's primary metric (``metrics.json``'s ``primary_metric``), the one it
    selected on; no default, so that no caller compares AP where the run ranks by another."""
    value = aggregate.get(metric)
    if value is None or not components:
        return None
    parts = [c.get(metric) for c in components]
    shown = metric.upper() if metric in ("ap", "auc") else metric
    text = f"the aggregate's {shown} is {_format(value)} " \
           f"(components: {', '.join(_format(p) for p in parts)})"
    known = [p for p in parts if p is not None and math.isfinite(p)]
    if not known or not math.isfinite(value):
        return text
    better = [k + 1 for k, p in enumerate(parts) if p is not None and p > value]
    if not better:
        return text + ": at least as high as every component"
    which = ", ".join(str(k) for k in better)
    return text + f": below component{'s' if len(better) > 1 else ''} {which}"
