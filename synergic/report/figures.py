"""The report's figures: ROC curves of the rows (Fig. 3), the metric against lambda (Fig. 4) and
against SDL^n's relative training time (Fig. 5). Drawn on matplotlib's Agg canvas, without
``pyplot``; the curve helpers are :mod:`synergic.plots`'s, shared with a run's own plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synergic.errors import SynergicError
from synergic.report.runs import CrossValidation, ReportRun, RunGroup, read_test_labels
from synergic.sweep import value_at

LAMBDA_KEY = "train.synergic_weight"
COMPONENTS_KEY = "model.components"


def _figure(width: float = 5.5, height: float = 4.5, panels: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * panels, height), dpi=120)
    FigureCanvasAgg(figure)
    axes = [figure.add_subplot(1, panels, k + 1) for k in range(panels)]
    return figure, axes


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    return _write_figure(figure, path)


def _write_figure(figure, path: Path) -> Path:
    from synergic.plots import _write_atomically  # the same atomic PNG writer as the run plots

    return _write_atomically(figure, path)


def _series(groups: Sequence[RunGroup], x_key: str) -> dict[str, list[RunGroup]]:
    """Groups split by every differing key except ``x_key`` (and the recipe name)."""
    series: dict[str, list[RunGroup]] = {}
    for group in groups:
        rest = [text for k, text in group.short.items() if k != x_key]
        if len({g.augmented for g in groups}) > 1:
            rest.append("DA" if group.augmented else "no DA")
        series.setdefault(", ".join(rest) or "all", []).append(group)
    return series


_SYNERGIC_KEYS = ("train.synergic_weight", "train.synergic_gradient", "model.synergic_head")


def _component_series(groups: Sequence[RunGroup]) -> dict[str, list[RunGroup]]:
    """As :func:`_series` over ``model.components``, where a single network (n = 1, which has no
    synergic term) joins every series that differs from it only in the synergic settings."""
    def key(group: RunGroup, synergic: bool) -> str:
        rest = [text for k, text in group.short.items()
                if k != COMPONENTS_KEY and (synergic or not k.startswith(_SYNERGIC_KEYS))]
        if len({g.augmented for g in groups}) > 1:
            rest.append("DA" if group.augmented else "no DA")
        return ", ".join(rest) or "all"

    series: dict[str, list[RunGroup]] = {}
    for group in groups:
        if group.recipe.model.components > 1:
            series.setdefault(key(group, True), []).append(group)
    singles = [g for g in groups if g.recipe.model.components == 1]
    for name, members in list(series.items()):
        matching = [g for g in singles if key(g, False) == key(members[0], False)]
        exact = [g for g in matching if key(g, True) == name]
        if matching:
            members.insert(0, (exact or matching)[0])
    for group in singles:  # a single network that no series took: a series of its own
        if not any(group in members for members in series.values()):
            series.setdefault(key(group, True), []).append(group)
    return series


def test_predictions(
    groups: Sequence[RunGroup], notes: list[str]
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str] | None]:
    """``({row name: (probabilities [N, K] float64, labels [N] int64)}, classes)``: the test
    predictions of the first seed of each row, for the figures. Rows whose labels cannot be had,
    hold one class, have other classes than the first such row, or do not reproduce their
    recorded AUC are left out, each with a note appended to ``notes``."""
    entries: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    classes: list[str] | None = None
    cache: dict = {}
    for group in groups:
        run = group.runs[0]
        run_classes = list(run.metrics.get("classes") or [])
        if len(run_classes) < 2:
            notes.append(f"ROC: {run.run_dir} names no classes in its metrics.json; left out")
            continue
        if classes is not None and run_classes != classes:
            notes.append(f"ROC: {group.label} has the classes {', '.join(run_classes)}; the "
                         f"figure has those of the first row ({', '.join(classes)}); left out")
            continue
        try:
            probabilities, labels = read_test_labels(run, cache)
        except SynergicError as error:
            notes.append(f"ROC: test labels of {run.run_dir} unavailable ({error}); left out")
            continue
        if len(set(labels.tolist())) < 2:
            notes.append(f"ROC: the test set of {run.run_dir} has one class only; left out")
            continue
        mismatch = _recorded_mismatch(run, probabilities, labels)
        if mismatch:
            notes.append(f"ROC: the labels found for {run.run_dir} give {mismatch} (has its data "
                         "set changed?); left out")
            continue
        classes = run_classes
        name = group.short_label + (f" (seed {run.seed})" if len(group.runs) > 1 else "")
        entries[name] = (probabilities, labels)
    return entries, classes


def _roc_figure(
    entries: dict[str, tuple[np.ndarray, np.ndarray]], classes: list[str] | None, path: Path
) -> Path | None:
    """One ROC curve per entry of :func:`test_predictions`: on one plot for two classes, one
    panel per class (one-vs-rest) for more."""
    from sklearn.metrics import roc_auc_score, roc_curve

    from synergic.plots import curve_label, one_vs_rest_figure

    if not entries or classes is None:
        return None
    if len(classes) > 2:
        figure = one_vs_rest_figure(entries, classes, "roc",
                                    "ROC, test set, one class vs the rest (as the paper's Fig. 3)")
        return _write_figure(figure, path)
    curves = {}
    for name, (probabilities, labels) in entries.items():
        is_positive = labels == 1
        recomputed = float(roc_auc_score(is_positive, probabilities[:, 1]))
        curves[curve_label(name, "AUC", recomputed)] = (probabilities[:, 1], is_positive)
    # Legends of many long labels go below the axes, where they cannot hide the curves.
    figure, (ax,) = _figure(6.0, 5.0 + 0.22 * len(curves))
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    for name, (scores, is_positive) in curves.items():
        false_positive_rate, true_positive_rate, _ = roc_curve(is_positive, scores)
        ax.plot(false_positive_rate, true_positive_rate, label=name)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("False positive rate (1 - specificity)")
    ax.set_ylabel("True positive rate (sensitivity)")
    ax.set_title("ROC, test set (as the paper's Fig. 3)")
    ax.grid(True, linewidth=0.5, alpha=0.4)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize="small", frameon=False)
    return _save(figure, path)


def _calibration_figure(
    entries: dict[str, tuple[np.ndarray, np.ndarray]], classes: list[str] | None, path: Path
) -> Path | None:
    """The reliability diagram of the entries of :func:`test_predictions` (two classes only):
    :func:`synergic.plots.plot_reliability`, the same as each run's ``calibration.png``, one
    curve per row."""
    from synergic.metrics import CALIBRATION_BINS
    from synergic.plots import plot_reliability

    if not entries or classes is None or len(classes) != 2:
        return None
    curves = {name: (probabilities[:, 1], labels == 1)
              for name, (probabilities, labels) in entries.items()}
    return plot_reliability(curves, path, n_bins=CALIBRATION_BINS,
                            title="Reliability diagram, test set")


def _recorded_mismatch(run: ReportRun, probabilities: np.ndarray, labels: np.ndarray) -> str:
    """``""`` when the test labels found reproduce the run's recorded AUC (its accuracy where the
    AUC is undefined: a class missing from the test set), else what they give instead."""
    from synergic.metrics import compute_metrics

    recorded = run.metrics.get("test") or {}
    try:
        recomputed = compute_metrics(probabilities, labels)
    except SynergicError as error:
        return f"no metrics ({error})"
    for key in ("auc", "accuracy"):
        value = recomputed.get(key)
        if recorded.get(key) is None or value is None or not np.isfinite(value):
            continue
        if abs(recorded[key] - value) > 1e-6:
            shown = "AUC" if key == "auc" else key
            return f"{shown} {value:.4f}, but the run recorded {recorded[key]:.4f}"
        return ""
    return ""


#: A point of the metric-against-lambda figure: ``(lambda, mean, (below, above))``, the error bar
#: reaching from ``mean - below`` to ``mean + above``.
LambdaPoint = tuple[float, float, tuple[float, float]]


def _lambda_figure(groups: Sequence[RunGroup], path: Path, metric: str) -> Path | None:
    """Fig. 4 of the rows: mean ± std over each row's seeds against lambda, one line per
    combination of the other differing keys; validation (when there is a split) and test panels."""
    series = {name: members for name, members in _series(groups, LAMBDA_KEY).items()
              if len({value_at(g.recipe, LAMBDA_KEY) for g in members}) > 1}
    if not series:
        return None
    splits = (["validation"] if any(g.has_validation() for m in series.values() for g in m) else [])
    splits.append("test")
    panels = []
    for split in splits:
        lines: dict[str, list[LambdaPoint]] = {}
        for name, members in series.items():
            stats = [(value_at(g.recipe, LAMBDA_KEY), g.stat(metric, split)) for g in members]
            lines[name] = sorted((x, s["mean"], (s["std"] or 0.0,) * 2)
                                 for x, s in stats if s["mean"] is not None)
        panels.append((f"{metric} ({split})", f"{metric} against lambda, {split} set", lines))
    return _draw_against_lambda(panels, path)


def _cv_lambda_figure(
    cross_validations: Sequence[CrossValidation], path: Path, metric: str
) -> Path | None:
    """Fig. 4 of sweeps of cross-validations (``synergic sweep --folds``) over lambda: each cell's
    mean over its fold runs, with its 95 % t-interval (``ci`` of its ``summary.json``) as the
    error bar; one line per sweep and combination of the other grid keys; a validation panel when
    every fold run had a validation split, and a held-out-fold panel (the folds' test sets)."""
    cells = [cv for cv in cross_validations if cv.sweep is not None and LAMBDA_KEY in cv.settings]
    several_sweeps = len({cv.sweep for cv in cells}) > 1
    series: dict[str, list[CrossValidation]] = {}
    for cv in cells:
        rest = [f"{key.rsplit('.', 1)[-1]}={value}" for key, value in cv.settings.items()
                if key != LAMBDA_KEY]
        series.setdefault(", ".join(([cv.sweep.name] if several_sweeps else []) + rest) or "all",
                          []).append(cv)
    series = {name: members for name, members in series.items()
              if len({float(cv.settings[LAMBDA_KEY]) for cv in members}) > 1}
    if not series:
        return None
    splits = [("validation", "validation set")] if all(
        cv.summary.get("validation") for members in series.values() for cv in members) else []
    splits.append(("test", "held-out folds"))
    panels = []
    for split, title in splits:
        lines: dict[str, list[LambdaPoint]] = {}
        for name, members in series.items():
            points = []
            for cv in members:
                stat = (cv.summary.get(split) or {}).get(metric) or {}
                if stat.get("mean") is None:
                    continue
                mean, interval = float(stat["mean"]), stat.get("ci")
                bar = (mean - interval[0], interval[1] - mean) if interval else (0.0, 0.0)
                points.append((float(cv.settings[LAMBDA_KEY]), mean, bar))
            lines[name] = sorted(points)
        panels.append((f"{metric} ({title})",
                       f"{metric} against lambda, {title}\n(mean, 95 % t-interval over folds)",
                       lines))
    return _draw_against_lambda(panels, path)


def _draw_against_lambda(
    panels: Sequence[tuple[str, str, dict[str, list[LambdaPoint]]]], path: Path
) -> Path:
    """One panel per ``(y label, title, {line name: points})``, side by side; a legend when
    there are several lines."""
    figure, axes = _figure(panels=len(panels))
    for ax, (ylabel, title, lines) in zip(axes, panels):
        for name, points in lines.items():
            if not points:
                continue
            ax.errorbar([x for x, _, _ in points], [mean for _, mean, _ in points],
                        yerr=[[bar[0] for *_, bar in points], [bar[1] for *_, bar in points]],
                        marker="o", capsize=3, label=name if len(lines) > 1 else None)
        ax.set_xlabel("lambda (train.synergic_weight)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, linewidth=0.5, alpha=0.4)
        if len(lines) > 1:
            ax.legend(fontsize="small")
    return _save(figure, path)


def _components_rows(groups: Sequence[RunGroup], metric: str) -> list[dict[str, Any]]:
    rows = []
    series = _component_series(groups)
    # A series that adds only one SDL^n (n >= 2) to a borrowed single network says little when
    # another series varies n itself (a lambda sweep next to a components sweep): leave it out.
    varied = {
        name: len({g.recipe.model.components for g in members} - {1})
        for name, members in series.items()
    }
    keep = 2 if max(varied.values(), default=0) >= 2 else 1
    for name, members in series.items():
        if len({g.recipe.model.components for g in members}) < 2 or varied[name] < keep:
            continue
        members = sorted(members, key=lambda g: g.recipe.model.components)
        reference = members[0]
        for group in members:
            time, base = group.training_seconds, reference.training_seconds
            rows.append({
                "series": name, "n": group.recipe.model.components, "label": group.label,
                "metric": group.stat(metric), "interval": group.interval(metric),
                "seconds": time,
                "relative_time": time / base if time is not None and base else None,
                "reference_n": reference.recipe.model.components,
            })
    return rows


def _components_figure(rows: list[dict[str, Any]], path: Path, metric: str) -> Path | None:
    plotted = [
        r for r in rows if r["relative_time"] is not None and r["metric"]["mean"] is not None
    ]
    if not plotted:
        return None
    figure, (ax,) = _figure()
    names = list(dict.fromkeys(r["series"] for r in plotted))
    for name in names:
        points = [r for r in plotted if r["series"] == name]
        ax.errorbar([r["relative_time"] for r in points], [r["metric"]["mean"] for r in points],
                    yerr=[r["metric"]["std"] or 0.0 for r in points], marker="o", capsize=3,
                    label=name if len(names) > 1 else None)
        for r in points:
            ax.annotate(f"n={r['n']}", (r["relative_time"], r["metric"]["mean"]),
                        textcoords="offset points", xytext=(4, 4), fontsize="small")
    reference = {r["reference_n"] for r in plotted}
    base = f"n = {reference.pop()}" if len(reference) == 1 else "the smallest n"
    ax.set_xlabel(f"relative training time (to {base})")
    ax.set_ylabel(f"test {metric}")
    ax.set_title("SDL^n: performance against time (as Fig. 5)")
    ax.margins(x=0.1, y=0.1)  # room for the n = k labels
    ax.grid(True, linewidth=0.5, alpha=0.4)
    if len(names) > 1:
        ax.legend(fontsize="small")
    return _save(figure, path)

