"""A sweep's summary: per cell, the mean and std over seeds of every metric, read from the runs'
``metrics.json`` (or, for a sweep of cross-validations, the mean, std and 95 % t-interval over
each cell's folds, from the cell's own summary); the cell selected on validation;
``summary.json`` and ``summary.md``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from synergic.errors import SynergicError, did_you_mean
from synergic.stats import format_stat, mean_std
from synergic.sweep.plan import CrossValidatedCell, SweepRun, value_at

__all__ = [
    "REPORTED_METRICS", "check_metric_name", "format_stat_interval", "printable_tree",
    "reported_metrics", "summarize_cv_sweep", "summarize_sweep", "summary_markdown",
    "write_summary",
]

#: The test metrics a summary (and a report) shows, in the order of the paper's Table 1 plus the
#: trapezoid AP (see docs/metrics.md).
REPORTED_METRICS: tuple[str, ...] = ("ap", "ap_trapezoid", "accuracy", "auc")


def reported_metrics(metric: str) -> list[str]:
    """The test columns of a summary or report ranked by ``metric`` (the select metric, or the
    runs' primary metric): ``metric`` first when it is not one of :data:`REPORTED_METRICS`
    (``balanced_accuracy`` for ISIC 2018), then those."""
    return ([metric] if metric not in REPORTED_METRICS else []) + list(REPORTED_METRICS)


def check_metric_name(metric: str, option: str = "--select-metric") -> None:
    """Raise a one-line :class:`SynergicError` unless ``metric`` is a metric synergic computes
    (:func:`synergic.metrics.is_metric_name`)."""
    from synergic.metrics import (
        CLASS_AUC_PREFIX,
        METRIC_NAMES_BINARY,
        METRIC_NAMES_MULTICLASS,
        TASK_AUC,
        is_metric_name,
    )

    names = list(dict.fromkeys(METRIC_NAMES_BINARY + METRIC_NAMES_MULTICLASS + (TASK_AUC,)))
    if not is_metric_name(metric):
        raise SynergicError(
            f"{option} {metric!r} is not a metric{did_you_mean(metric, names)}: "
            f"use one of {', '.join(names)} or {CLASS_AUC_PREFIX}<class>"
        )


def primary_metric_of(
    records: Sequence[Mapping[str, Any]], where: str = "the runs",
    option: str | None = "--select-metric",
) -> str:
    """The primary metric that ``records`` (runs' ``metrics.json``, or cross-validation summaries)
    record as ``primary_metric``: the data set's ranking metric; ``ap`` for records written before
    data sets named theirs. ``option``: the calling command's option that chooses the metric
    instead (``--select-metric`` of ``sweep``, ``--metric`` of ``report``), named in the error;
    None for a command that has none.

    Raises:
        SynergicError: records that name different metrics (runs of different data sets).
    """
    names = list(dict.fromkeys(str(r.get("primary_metric") or "ap") for r in records))
    if len(names) > 1:
        action = (f"choose the metric with {option}" if option else
                  "give runs of one data set")
        raise SynergicError(
            f"{where} rank by different primary metrics ({', '.join(names)}): runs of different "
            f"data sets; {action}"
        )
    return names[0] if names else "ap"



def _read_metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "metrics.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SynergicError(f"{run_dir} has no metrics.json: the run did not finish") from None
    except (OSError, ValueError) as error:
        raise SynergicError(f"{path} cannot be read ({error}): delete the run to redo it") from None


def summarize_sweep(
    runs: Sequence[SweepRun],
    output: str | os.PathLike[str],
    *,
    select_metric: str | None = None,
    description: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Per cell, the mean and std over seeds of every test metric and validation metric, read from
    the runs' ``metrics.json``; and the cell with the best mean validation ``select_metric``
    (None: the runs' primary metric, :func:`primary_metric_of`)."""
    output = Path(output)
    cells: dict[str, dict[str, Any]] = {}
    records: list[Mapping[str, Any]] = []
    for sweep_run in runs:
        cell = cells.setdefault(sweep_run.cell, {
            "cell": sweep_run.cell,
            "settings": {key: value_at(sweep_run.recipe, key) for key in sweep_run.settings},
            "runs": [], "_test": [], "_validation": [],
        })
        metrics = _read_metrics(sweep_run.run_dir)
        records.append(metrics)
        cell["runs"].append({"seed": sweep_run.seed,
                             "run_dir": sweep_run.run_dir.relative_to(output).as_posix()})
        cell["_test"].append(metrics.get("test", {}))
        validation = metrics.get("validation")
        cell["_validation"].append(
            {k: v for k, v in validation.items() if k != "step"} if validation else None
        )
    for cell in cells.values():
        tests, validations = cell.pop("_test"), cell.pop("_validation")
        names = list(dict.fromkeys(k for t in tests for k in t))
        cell["test"] = {name: mean_std([t.get(name) for t in tests]) for name in names}
        if all(v is not None for v in validations):
            names = list(dict.fromkeys(k for v in validations for k in v))
            cell["validation"] = {
                name: mean_std([v.get(name) for v in validations]) for name in names
            }
        else:
            cell["validation"] = None

    select_metric = select_metric or primary_metric_of(records)
    selected, note = _select(list(cells.values()), select_metric)
    return {
        **(dict(description) if description else {}),
        "select_metric": select_metric,
        "cells": list(cells.values()),
        "selected": selected,
        "selection_note": note,
    }


def summarize_cv_sweep(
    cells: Sequence[CrossValidatedCell],
    cell_summaries: Sequence[Mapping[str, Any]],
    output: str | os.PathLike[str],
    *,
    select_metric: str | None = None,
    description: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary of a sweep whose cells are cross-validations (``synergic sweep --folds``).

    Per cell, from its cross-validation summary (``cell_summaries``, as
    :func:`synergic.cv.summarize_cv` gives them, in the order of ``cells``): every test and
    validation metric's ``mean``, ``std``, ``n``, ``values`` and ``ci`` (the 95 % t-interval over
    the cell's ``folds x repeats`` runs), ``cv_dir`` (the cell's folder, relative to ``output``)
    and its ``runs``; and the cell with the best mean ``select_metric`` (None: the primary
    metric) over its held-out folds (their ``test`` metrics, as scikit-learn's ``GridSearchCV``
    selects; the held-out folds are training images, so the data set's test split stays
    untouched for the final model).
    """
    output = Path(output)
    entries = []
    for cell, cell_summary in zip(cells, cell_summaries, strict=True):
        recipe = cell.plan.runs[0].recipe
        entries.append({
            "cell": cell.cell,
            "settings": {key: value_at(recipe, key) for key in cell.settings},
            "cv_dir": cell.plan.output.relative_to(output).as_posix(),
            "group_by": cell.plan.group_by,
            "runs": [{"repeat": run.repeat, "fold": run.fold,
                      "run_dir": run.run_dir.relative_to(output).as_posix()}
                     for run in cell.plan.runs],
            "test": cell_summary["test"],
            "validation": cell_summary["validation"],
        })
    plan = cells[0].plan
    select_metric = select_metric or primary_metric_of(cell_summaries)
    # As scikit-learn's GridSearchCV: the cell with the best mean over its held-out folds (parts
    # of the training split); the data set's test split stays untouched for the final model.
    selected, note = _select(entries, select_metric, unit="fold runs", split="test")
    return {
        **(dict(description) if description else {}),
        "folds": plan.folds,
        "repeats": plan.repeats,
        "interval": cell_summaries[0].get("interval"),
        "select_metric": select_metric,
        "cells": entries,
        "selected": selected,
        "selection_note": note,
    }


def _select(cells: list[dict[str, Any]], metric: str, unit: str = "seeds",
            split: str = "validation") -> tuple[str | None, str]:
    missing = [c["cell"] for c in cells if c[split] is None]
    if missing:
        if len(missing) == len(cells):
            return None, (
                "no validation split, so no cell is selected (selecting on the test set would "
                "overstate the result): add one with --set data.validation_fraction=0.2"
            )
        return None, f"cells without a validation split ({', '.join(missing)}): nothing selected"
    scored = [(c[split].get(metric, {}).get("mean"), k) for k, c in enumerate(cells)]
    scored = [(value, k) for value, k in scored if value is not None]
    what = "validation" if split == "validation" else "held-out-fold"
    if not scored:
        return None, f"no cell has a {what} {metric}: nothing selected"
    best = max(scored, key=lambda item: (item[0], -item[1]))[1]  # ties: the first cell
    count = cells[best][split][metric]["n"]
    over = f" over {count} {unit}" if count > 1 else ""
    return cells[best]["cell"], f"selected by the highest mean {what} {metric}{over}"


def write_summary(summary: Mapping[str, Any], output: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``summary.md`` into ``output``; returns their paths."""
    from synergic.experiment import json_safe, write_text_atomically

    output = Path(output)
    json_path, md_path = output / "summary.json", output / "summary.md"
    # The recipe path, overrides and grid values may be file names that are not UTF-8 (\xNN).
    summary = printable_tree(summary)
    write_text_atomically(json_path, json.dumps(json_safe(dict(summary)), indent=2) + "\n")
    write_text_atomically(md_path, summary_markdown(summary))
    return json_path, md_path


def format_stat_interval(stat: Mapping[str, Any] | None, digits: int = 4) -> str:
    """``0.6536 ± 0.0123 [0.6230, 0.6842]``: :func:`synergic.stats.format_stat` and the
    ``ci`` of a :func:`synergic.stats.mean_std_interval` dict, when there is one."""
    text = format_stat(stat, digits)
    interval = (stat or {}).get("ci")
    if interval:
        text += f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"
    return text


def printable_tree(value: Any) -> Any:
    """``value`` with every string (keys too) as :func:`synergic.data.names.printable_name`."""
    from synergic.data.names import printable_name

    if isinstance(value, str):
        return printable_name(value)
    if isinstance(value, Mapping):
        return {printable_tree(k): printable_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_tree(v) for v in value]
    return value


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """The summary as a Markdown page: one table row per cell, the selected cell marked."""
    metric = summary.get("select_metric", "ap")
    cells = summary["cells"]
    title = f"# Sweep of {summary.get('recipe', 'a recipe')}"
    lines = [title, ""]
    grid = summary.get("grid") or {}
    if grid:
        axes = (f"`{key}` = {', '.join(map(str, values))}" for key, values in grid.items())
        lines.append("Grid: " + "; ".join(axes))
    if summary.get("overrides"):
        lines.append("Overrides: " + " ".join(f"`--set {o}`" for o in summary["overrides"]))
    seeds = summary.get("seeds")
    folds = summary.get("folds")
    if folds:
        repeats = summary.get("repeats", 1)
        lines.append(
            f"Each cell is a cross-validation of its recipe: {folds} folds x {repeats} "
            f"repeat{'s' if repeats != 1 else ''}; values are mean ± sample standard deviation "
            "over the fold runs, with the 95 % t-interval in brackets (optimistic: the folds "
            "share training images). Each cell's folder holds its own summary.json and "
            "oof_predictions.csv."
        )
    elif seeds:
        lines.append(f"Seeds per cell: {seeds} (the recipe's seed, then + 1, ...); "
                     "values are mean ± sample standard deviation over seeds.")
    lines.append("")

    def shown(stat: Mapping[str, Any] | None) -> str:
        return format_stat_interval(stat) if folds else format_stat(stat)

    columns = reported_metrics(metric)
    header = ["cell", "fold runs" if folds else "seeds", f"validation {metric}"]
    # A cross-validation's test sets are its held-out folds, parts of the training split.
    header += [f"held-out {_column_title(m).removeprefix('test ')}" if folds
               else _column_title(m) for m in columns]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for cell in cells:
        name = cell["cell"]
        if name == summary.get("selected"):
            name = f"**{name}** (selected)"
        validation = "no split"
        if cell["validation"]:
            validation = shown(cell["validation"].get(metric))
        row = [name, str(len(cell["runs"])), validation]
        row += [shown(cell["test"].get(m)) for m in columns]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    if summary.get("selected") and folds:
        cell = next(c for c in cells if c["cell"] == summary["selected"])
        lines.append(
            f"**Selected: `{cell['cell']}`**, {summary['selection_note']} "
            f"({shown(cell['test'].get(metric))}), as scikit-learn's GridSearchCV selects. Once "
            "chosen by it, that mean is optimistic; the data set's test split, which the sweep "
            "never touched, gives the final estimate."
        )
    elif summary.get("selected"):
        cell = next(c for c in cells if c["cell"] == summary["selected"])
        lines.append(
            f"**Selected: `{cell['cell']}`**, {summary['selection_note']} "
            f"({shown(cell['validation'][metric])}); its test {metric} is "
            f"{shown(cell['test'].get(metric))}."
        )
    else:
        lines.append(f"Nothing selected: {summary['selection_note']}.")
    if summary.get("not_in_sweep"):
        lines += ["", f"Kept in this folder, not part of this sweep: "
                  f"{', '.join(f'`{name}`' for name in summary['not_in_sweep'])} (runs of an "
                  "earlier grid; left out of this summary and of `synergic report`)."]
    lines += ["", "AP is scikit-learn's step-wise average precision (today's ISIC scorer); "
              "AP (trapezoid) is the pre-0.19 definition that the paper most likely used "
              "(docs/metrics.md). Compare sweeps and the paper with `synergic report`.", ""]
    return "\n".join(lines)


_COLUMN_TITLES = {"ap": "test AP", "ap_trapezoid": "AP (trapezoid)", "accuracy": "accuracy",
                  "auc": "AUC"}


def _column_title(metric: str) -> str:
    return _COLUMN_TITLES.get(metric, f"test {metric}")
