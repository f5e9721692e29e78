"""The Markdown report: Table 1 of the rows, the figures' sections, the paper's rows, notes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from synergic.data.names import printable_name
from synergic.errors import SynergicError
from synergic.paper import AP_NOTE, CITATION, FIGURE_FINDINGS, TABLE_1, TABLE_2
from synergic.report.evidence import (
    calibration_rows,
    cv_sdl_ensemble_comparisons,
    sdl_ensemble_comparisons,
)
from synergic.report.figures import (
    _calibration_figure,
    _components_figure,
    _components_rows,
    _cv_lambda_figure,
    _lambda_figure,
    _roc_figure,
    test_predictions,
)
from synergic.report.runs import (
    CrossValidation,
    RunGroup,
    find_cross_validations,
    find_runs,
    group_runs,
    paper_applies,
)
from synergic.stats import DEFAULT_N_BOOTSTRAP, format_stat
from synergic.sweep import REPORTED_METRICS, reported_metrics

__all__ = ["Report", "default_report_path", "write_report"]

_COLUMN_TITLES = {
    "ap": "AP", "ap_trapezoid": "AP (trapezoid)", "accuracy": "accuracy", "auc": "AUC",
}


@dataclass
class Report:
    """What :func:`write_report` wrote."""

    path: Path
    groups: list[RunGroup]
    figures: dict[str, Path]
    notes: list[str]
    paper: bool = False
    """Whether the paper's rows were added."""
    comparisons: list[dict] = field(default_factory=list)
    """The paired SDL-vs-ensemble comparisons
    (:func:`synergic.report.evidence.sdl_ensemble_comparisons`)."""
    cross_validations: list[CrossValidation] = field(default_factory=list)
    cv_comparisons: list[dict] = field(default_factory=list)
    """SDL vs ensemble on out-of-fold predictions in sweeps of cross-validations
    (:func:`synergic.report.evidence.cv_sdl_ensemble_comparisons`)."""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def default_report_path(paths: Sequence[str | os.PathLike[str]]) -> Path:
    """Where the report goes when no output is given: ``report.md`` in the one run or sweep
    directory given, or in the deepest folder that holds all of several (their common parent,
    ``runs/`` for ``runs/lambda runs/components``). Relative to the working directory when that
    folder is inside it.

    Raises:
        SynergicError: no paths, or paths whose only common folder is the file system's root.
    """
    if not paths:
        raise SynergicError("give at least one run or sweep directory")
    folders = [os.path.abspath(path) for path in paths]
    common = Path(os.path.commonpath(folders)) if len(folders) > 1 else Path(folders[0])
    if common.parent == common:
        raise SynergicError(
            f"the directories given share no folder but {common}: give --output PATH.md for the "
            "report"
        )
    try:
        common = common.relative_to(Path.cwd())
    except ValueError:
        pass
    return common / "report.md"


def write_report(
    paths: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str] | None = None,
    *,
    paper: bool | None = None,
    metric: str | None = None,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
) -> Report:
    """Write the Markdown report of the runs, sweeps and cross-validations in ``paths`` to
    ``output``, with its figures beside it (``<stem>_roc.png``, ``<stem>_lambda.png``,
    ``<stem>_cv_lambda.png``, ``<stem>_components.png``, ``<stem>_calibration.png``).

    ``output`` defaults to ``report.md`` beside what is reported on
    (:func:`default_report_path`). ``metric`` is the one plotted against lambda and time, shown
    for validation and first among the test columns; None: the runs' primary metric (their data
    set's ranking metric as ``metrics.json`` records it, :func:`synergic.sweep.primary_metric_of`).
    ``paper`` adds the paper's reported numbers (Tables 1 and 2) as reference rows; by default
    (None) only when every run is on the official ISIC 2016 split (:func:`paper_applies`).
    ``n_bootstrap`` is the number of paired resamples of the SDL-vs-ensemble comparison
    (seeded 0, as ``synergic compare``).

    Raises:
        SynergicError: ``output`` not ending in ``.md``, a path that holds no finished run or
            cross-validation, or (for the default output) paths with no common folder but the
            file system's root.
    """
    output = default_report_path(paths) if output is None else Path(output)
    if output.suffix.lower() != ".md":
        raise SynergicError(f"--output {output}: the report is Markdown; give a path ending in .md")
    if not paths:
        raise SynergicError("give at least one run or sweep directory")
    cross_validations, other_paths, notes = find_cross_validations(paths)
    if not cross_validations and not other_paths:
        raise SynergicError(f"nothing to report: {notes[0]}")
    runs, selected = [], set()
    if other_paths or not cross_validations:
        runs, selected, found_notes = find_runs(other_paths)
        notes += found_notes
    if paper is None:
        paper, reasons = paper_applies(runs)
        paper = paper and bool(runs)
        if not paper and any(run.recipe.data.dataset == "isic2016" for run in runs):
            notes.append(f"the paper's rows are left out: {reasons[0]} (--paper adds them)")
    if metric is None:
        from synergic.sweep.summary import primary_metric_of

        metric = primary_metric_of([run.metrics for run in runs]
                                   + [cv.summary for cv in cross_validations], option="--metric")
    groups = group_runs(runs)
    for group in groups:
        group.selected = any(run.run_dir.resolve() in selected for run in group.runs)
    stem = output.with_suffix("")
    figures: dict[str, Path] = {}

    def figure_path(name: str) -> Path:
        return stem.parent / f"{stem.name}_{name}.png"

    lines = ["# synergic report", ""]
    comparisons: list[dict] = []
    if groups:
        lines += _table_1(groups, metric, paper)
        comparisons = sdl_ensemble_comparisons(groups, notes, n_bootstrap=n_bootstrap)
        lines += _paired_section(comparisons)
        entries, classes = test_predictions(groups, notes)
        roc = _roc_figure(entries, classes, figure_path("roc"))
        if roc is not None:
            figures["roc"] = roc
            lines += ["## ROC curves (Fig. 3)", "",
                      f"![ROC curves]({roc.name})", "",
                      "One curve per row (its first seed), from the run's predictions.csv."
                      + (f" The paper: {FIGURE_FINDINGS['fig3']}" if paper else ""), ""]
        lam = _lambda_figure(groups, figure_path("lambda"), metric)
        if lam is not None:
            figures["lambda"] = lam
            lines += [f"## {metric} against lambda (Fig. 4)", "",
                      f"![{metric} against lambda]({lam.name})", "",
                      "Choose lambda on the validation set, then read its test value."
                      + (f" The paper: {FIGURE_FINDINGS['fig4']}" if paper else ""), ""]
        lines += _components_section(groups, metric, paper, figure_path("components"), figures)
        calibration = _calibration_figure(entries, classes, figure_path("calibration"))
        if calibration is not None:
            figures["calibration"] = calibration
        lines += _calibration_section(groups, calibration)
    cv_lambda = _cv_lambda_figure(cross_validations, figure_path("cv_lambda"), metric)
    if cv_lambda is not None:
        figures["cv_lambda"] = cv_lambda
    lines += _cross_validation_section(cross_validations, metric, cv_lambda)
    cv_comparisons = cv_sdl_ensemble_comparisons(cross_validations, notes,
                                                 n_bootstrap=n_bootstrap)
    lines += _cv_paired_section(cv_comparisons)
    if paper:
        lines += ["## The ISIC 2016 leaderboard (paper, Table 2)", "",
                  "| method | AP* | accuracy | AUC |", "|---|---|---|---|"]
        for reported in TABLE_2:
            lines.append(f"| {reported.method}, paper (reported) | {reported.ap:.3f} | "
                         f"{reported.accuracy:.3f} | {reported.auc:.3f} |")
        lines += ["", "\\* the challenge ranked by AP alone, computed with scikit-learn < 0.19: "
                  "the trapezoid definition (compare with AP (trapezoid) above).", ""]

    if groups:
        lines += ["## Runs", ""]
        for group in groups:
            dirs = ", ".join(f"`{run.run_dir}` (seed {run.seed})" for run in group.runs)
            lines.append(f"- {group.label}: {dirs}")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    lines.append("")
    # Run folders and recipe values are file names: any that are not UTF-8 are written as \xNN.
    _write_text(output, printable_name("\n".join(lines)))
    return Report(output, groups, figures, notes, paper, comparisons, cross_validations,
                  cv_comparisons)


def _with_interval(text: str, interval: Sequence[float] | None) -> str:
    return text if interval is None else f"{text} [{interval[0]:.4f}, {interval[1]:.4f}]"


def _table_1(groups: Sequence[RunGroup], metric: str, paper: bool) -> list[str]:
    runs = sum(len(group.runs) for group in groups)
    lines = [f"{runs} runs in {len(groups)} rows. Values are mean ± sample standard deviation "
             "over the seeds of a row (runs whose recipes differ only in the seed)."]
    if any(group.interval(m) for group in groups for m in (metric, *REPORTED_METRICS)):
        lines[-1] += (" A row of one run shows its 95 % bootstrap interval over the test images "
                      "in brackets (test_ci of its metrics.json).")
    lines.append("")
    show_validation = any(g.has_validation() for g in groups)
    columns = reported_metrics(metric)
    header = ["run", "DA", "runs"] + ([f"validation {metric}"] if show_validation else [])
    header += [_COLUMN_TITLES.get(m, m) for m in columns] + ["training time"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for group in groups:
        label = f"**{group.label}** (selected on validation)" if group.selected else group.label
        row = [label, "Y" if group.augmented else "N", str(len(group.runs))]
        if show_validation:
            validation = "no split"
            if group.has_validation():
                validation = format_stat(group.stat(metric, "validation"))
            row.append(validation)
        row += [_with_interval(format_stat(group.stat(m)), group.interval(m)) for m in columns]
        row.append(_duration(group.training_seconds))
        lines.append("| " + " | ".join(row) + " |")
    if paper:
        for reported in TABLE_1:
            row = [f"{reported.method}, paper (reported)", "Y" if reported.augmentation else "N",
                   "", *([""] if show_validation else []), *([""] * (len(columns) - 4)),
                   "", f"{reported.ap:.4f}*",
                   f"{reported.accuracy:.4f}", f"{reported.auc:.4f}", ""]
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    if paper:
        lines += [f"Rows marked *paper (reported)* are Table 1 of {CITATION} (ISIC 2016 test set). "
                  f"{AP_NOTE}", ""]
    else:
        lines += ["AP is scikit-learn's step-wise average precision (today's ISIC scorer); AP "
                  "(trapezoid) is the pre-0.19 trapezoid definition (docs/metrics.md).", ""]
    return lines


def _signed(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:+.4f}"


def _paired_section(comparisons: Sequence[dict]) -> list[str]:
    if not comparisons:
        return []
    first = comparisons[0]
    # The metric of `synergic compare` without --metric (the runs' primary metric; AUC for AP).
    shown = {"auc": "AUC", "ap": "AP"}
    names = list(dict.fromkeys(shown.get(c["metric"], c["metric"]) for c in comparisons))
    name = names[0] if len(names) == 1 else "metric"
    lines = ["## SDL vs ensemble (paired, on the same test images)", "",
             f"Compared in {' / '.join(names)}: the runs' primary metric, as `synergic compare` "
             "compares without --metric (AUC where the data set ranks by AP).", "",
             f"| ensemble (A) | SDL (B) | seeds | images | {name} A | {name} B | "
             "B - A [95 % interval] | DeLong p |",
             "|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        seeds = str(c["seed_a"]) if c["seed_a"] == c["seed_b"] else f"{c['seed_a']}, {c['seed_b']}"
        p_value = "n/a" if c["p_value"] is None else f"{c['p_value']:.4g}"
        label = "" if len(names) == 1 else f"{shown.get(c['metric'], c['metric'])} "
        lines.append(
            f"| {c['ensemble']} | {c['sdl']} | {seeds} | {c['images']} | {label}{c['a']:.4f} | "
            f"{label}{c['b']:.4f} | {_signed(c['difference'])} [{_signed(c['ci'][0])}, "
            f"{_signed(c['ci'][1])}] | {p_value} |"
        )
    lines += ["", f"B - A > 0: SDL scores better than the same networks trained "
              f"without the synergic term. The interval is a paired bootstrap of the test images "
              f"({first['n_bootstrap']} resamples within each class, seed {first['seed']}); the "
              "p-value is DeLong's test of equal AUCs (n/a for other metrics and for more than "
              "two classes). `synergic compare A B` gives the same for "
              "one pair of runs (docs/experiments.md: \"Is SDL better than the ensemble on my "
              "data?\").", ""]
    return lines


def _cv_paired_section(comparisons: Sequence[dict]) -> list[str]:
    if not comparisons:
        return []
    shown = {"auc": "AUC", "ap": "AP"}
    lines = ["### SDL vs ensemble on the out-of-fold predictions (paired)", "",
             "| sweep | ensemble (A) | SDL (B) | repeat | images | metric | A | B | "
             "B - A [95 % interval] | DeLong p |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        for r in c["repeats"]:
            p_value = "n/a" if r["p_value"] is None else f"{r['p_value']:.4g}"
            lines.append(
                f"| `{c['sweep']}` | {c['ensemble']} | {c['sdl']} | {r['repeat']} | "
                f"{r['images']} | {shown.get(r['metric'], r['metric'])} | {r['a']:.4f} | "
                f"{r['b']:.4f} | {_signed(r['difference'])} [{_signed(r['ci'][0])}, "
                f"{_signed(r['ci'][1])}] | {p_value} |"
            )
    first = comparisons[0]["repeats"][0]
    lines += ["", "Each repeat pools the held-out predictions of its fold runs "
              "(oof_predictions.csv): every training image scored once by each cell, by a model "
              "that did not train on it, in the same folds for both cells. The interval is a "
              f"paired bootstrap of those images ({first['n_bootstrap']} resamples within each "
              f"class, seed {first['seed']}); the p-value is DeLong's test. The k models of a "
              "repeat count as one classifier, and the interval reflects the images, not the "
              "training: `synergic compare CV_A CV_B` gives the same (docs/experiments.md).", ""]
    return lines


def _components_section(groups: Sequence[RunGroup], metric: str, paper: bool, path: Path,
                        figures: dict[str, Path]) -> list[str]:
    rows = _components_rows(groups, metric)
    if not rows:
        return []
    comp = _components_figure(rows, path, metric)
    lines = ["## SDL^n: performance against training time (Fig. 5)", ""]
    if comp is not None:
        figures["components"] = comp
        lines += [f"![{metric} against relative training time]({comp.name})", ""]
    lines += ["| series | n | run | " + f"test {metric} | training time | relative time |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        relative = "n/a" if r["relative_time"] is None else f"{r['relative_time']:.2f}"
        lines.append(f"| {r['series']} | {r['n']} | {r['label']} | "
                     f"{_with_interval(format_stat(r['metric']), r['interval'])} | "
                     f"{_duration(r['seconds'])} | {relative} |")
    lines += ["", "Training time is read from each run's log.csv (validation and checkpoints "
              "included, data preparation excluded), averaged over seeds, relative to the "
              "smallest n of its series; times are comparable only between runs on the same "
              "hardware." + (f" The paper: {FIGURE_FINDINGS['fig5']}" if paper else ""), ""]
    return lines


def _calibration_section(groups: Sequence[RunGroup], figure: Path | None) -> list[str]:
    titles, rows = calibration_rows(groups)
    if not rows and figure is None:
        return []
    lines = ["## Thresholds and calibration", ""]
    if figure is not None:
        lines += [f"![Reliability diagram]({figure.name})", "",
                  "The reliability diagram of each row's first seed on the test set (the fraction "
                  "of malignant images against the mean predicted probability, in 10 bins; the "
                  "expected calibration error in the legend), as each run's calibration.png.", ""]
    if rows:
        lines += ["| run | " + " | ".join(titles) + " |", "|---|" + "---|" * len(titles)]
        for group, stats in rows:
            lines.append(f"| {group.label} | " + " | ".join(format_stat(s) for s in stats) + " |")
        lines += ["", "From each run's metrics.json (mean ± std over a row's seeds): Brier score "
                  "and expected calibration error of the test probabilities (lower is better); "
                  "the threshold chosen on the validation split by Youden's J and the test "
                  "sensitivity and specificity at it; the test specificity at 89 % sensitivity "
                  "(as the ISIC 2017 scorer); with a prior correction, the Brier score and ECE of "
                  "the probabilities moved from the sampler's class mix to the data's "
                  "(docs/metrics.md).", ""]
    return lines


def _cross_validation_section(cross_validations: Sequence[CrossValidation], metric: str = "ap",
                              lambda_figure: Path | None = None) -> list[str]:
    if not cross_validations:
        return []
    lines = ["## Cross-validation", ""]
    sweeps: dict[Path, list[CrossValidation]] = {}
    for cv in cross_validations:
        if cv.sweep is not None:
            sweeps.setdefault(cv.sweep, []).append(cv)
    for sweep, cells in sweeps.items():
        lines += _cross_validation_sweep_table(sweep, cells, metric)
    if lambda_figure is not None:
        lines += [f"![{metric} against lambda, cross-validated]({lambda_figure.name})", "",
                  f"{metric} against lambda (as Fig. 4) for the sweeps of cross-validations: each "
                  "cell's mean over its fold runs, with its 95 % t-interval as the error bar. "
                  "Choose lambda on the held-out folds (or validation), then train it on the "
                  "whole training split for its test value.", ""]
    for cv in cross_validations:
        if cv.sweep is not None:
            continue
        summary = cv.summary
        repeats = summary.get("repeats", 1)
        title = (f"### {cv.label}: {summary['folds']} folds x {repeats} "
                 f"repeat{'s' if repeats != 1 else ''}"
                 + (f", grouped by {summary['group_by']}" if summary.get("group_by") else ""))
        lines += [title, "", f"`{cv.path}`", "",
                  "| test metric | mean ± std | 95 % t-interval | folds |", "|---|---|---|---|"]
        tests = summary["test"]
        names = [m for m in (metric, *REPORTED_METRICS) if m in tests]
        names = list(dict.fromkeys(names)) + [m for m in tests if m not in names]
        for name in names:
            stat = tests[name] or {}
            interval = stat.get("ci")
            shown = "n/a" if not interval else f"[{interval[0]:.4f}, {interval[1]:.4f}]"
            lines.append(f"| {_COLUMN_TITLES.get(name, name)} | {format_stat(stat)} | {shown} | "
                         f"{stat.get('n', 'n/a')} |")
        lines.append("")
    lines += ["Each fold's test set is a held-out part of the training images; the t-interval "
              "over the folds treats them as independent, which they are not (they share "
              "training images): read it as optimistic. From each folder's summary.json "
              "(`synergic cv`, `synergic sweep --folds`).", ""]
    return lines


def _cross_validation_sweep_table(sweep: Path, cells: Sequence[CrossValidation], metric: str
                                  ) -> list[str]:
    # One row per cell of a sweep whose cells are cross-validations: mean ± std [t-interval].
    first = cells[0].summary
    repeats = first.get("repeats", 1)
    names = [m for m in (metric, *REPORTED_METRICS)
             if any(m in cv.summary["test"] for cv in cells)]
    names = list(dict.fromkeys(names))
    lines = [f"### Sweep of {first.get('recipe', sweep.name)}: each cell {first['folds']} folds x "
             f"{repeats} repeat{'s' if repeats != 1 else ''}", "", f"`{sweep}`", "",
             "| cell | fold runs | "
             + " | ".join(f"held-out {_COLUMN_TITLES.get(m, m)}" for m in names) + " |",
             "|" + "---|" * (len(names) + 2)]
    for cv in cells:
        tests = cv.summary["test"]
        name = f"**{cv.cell}** (selected)" if cv.selected else cv.cell
        counts = {(tests.get(m) or {}).get("n") for m in names} - {None}
        row = [name, str(max(counts)) if counts else "n/a"]
        row += [_with_interval(format_stat(tests.get(m)), (tests.get(m) or {}).get("ci"))
                for m in names]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Mean ± sample standard deviation over each cell's fold runs, with the 95 % "
              "t-interval in brackets. (selected): the sweep's choice, the best mean over the "
              "held-out folds of its --select-metric (the sweep's summary.json). Each cell's "
              "folder holds its own summary.json and oof_predictions.csv.", ""]
    return lines


def _write_text(path: Path, text: str) -> None:
    from synergic.rundir import write_text_atomically

    write_text_atomically(path, text)
