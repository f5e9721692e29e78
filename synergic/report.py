"""Comparison reports: runs and sweeps side by side, as the SDL paper's Table 1 and Figs. 3-5.

>>> from synergic.report import write_report
>>> write_report(["runs/lambda", "runs/ensemble"])   # doctest: +SKIP

writes ``runs/report.md`` (by default beside what it reports on: :func:`default_report_path`) and,
beside it, the figures that the runs allow:

- ``report_roc.png``: the ROC curves of the rows (Fig. 3): on one plot for two-class runs, one
  panel per class (that class against the rest) for more;
- ``report_lambda.png``: the metric against lambda (Fig. 4), when rows differ in
  ``train.synergic_weight``; validation and test panels;
- ``report_components.png``: the metric against relative training time of SDL^n (Fig. 5), when
  rows differ in ``model.components``; time is relative to the n = 1 row (or the smallest n).

A *row* is a set of runs whose recipes differ only in their seed (and in keys that do not change
what a run computes, :data:`synergic.sweep.RESULT_NEUTRAL_KEYS`): a cell of a sweep, or runs given
one by one. Its values are the mean and sample standard deviation over those runs. When the runs
are on the official ISIC 2016 split (:func:`paper_applies`), the paper's reported numbers follow
as reference rows, marked "paper (reported)".

Everything is read from the run directories (``recipe.yaml``, ``metrics.json``,
``predictions.csv``, ``log.csv``), except the test labels that the ROC curves need: they come from
a ``label`` column of ``predictions.csv`` or a ``test_labels.csv`` (``image,label``) when the run
has one, else from the run's data set, opened through its recipe (no image is decoded).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synergic.data.names import printable_name
from synergic.errors import SynergicError
from synergic.recipe import Recipe, load_recipe, recipe_differences
from synergic.sweep import REPORTED_METRICS, RESULT_NEUTRAL_KEYS, format_stat, mean_std, value_at

__all__ = [
    "ReportRun",
    "RunGroup",
    "Report",
    "default_report_path",
    "find_runs",
    "group_runs",
    "paper_applies",
    "training_seconds",
    "read_test_labels",
    "write_report",
]

LAMBDA_KEY = "train.synergic_weight"
COMPONENTS_KEY = "model.components"
_GROUP_IGNORED = (*RESULT_NEUTRAL_KEYS, "seed")
_COMPARED = ("name", "seed", "data", "model", "train")
_COLUMN_TITLES = {
    "ap": "AP", "ap_trapezoid": "AP (trapezoid)", "accuracy": "accuracy", "auc": "AUC",
}


# ------------------------------------------------------------------------------------ the runs


@dataclass
class ReportRun:
    """A finished run: its directory, resolved recipe and metrics."""

    run_dir: Path
    recipe: Recipe
    metrics: dict[str, Any]

    @property
    def seed(self) -> int:
        return self.recipe.seed

    @property
    def training_seconds(self) -> float | None:
        return training_seconds(self.run_dir, self.recipe.train.log_every)


def training_seconds(run_dir: str | os.PathLike[str], log_every: int) -> float | None:
    """Seconds the run spent training, from its ``log.csv``; None without one.

    The trainer logs, every ``log_every`` steps, the time since its previous log divided by
    ``log_every`` (``seconds_per_step``), so the sum of ``seconds_per_step * log_every`` over the
    rows is the training time, validation and checkpoints included, data preparation and the test
    evaluation excluded.
    """
    path = Path(run_dir) / "log.csv"
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (FileNotFoundError, UnicodeDecodeError, csv.Error):
        return None
    try:
        seconds = [float(row["seconds_per_step"]) for row in rows]
    except (KeyError, TypeError, ValueError):
        return None
    return sum(seconds) * max(1, int(log_every)) if seconds else None


def _read_run(run_dir: Path) -> ReportRun:
    if not (run_dir / "recipe.yaml").is_file():
        raise SynergicError(
            f"{run_dir} has metrics.json but no recipe.yaml: not a synergic run directory"
        )
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError) as error:
        raise SynergicError(f"{run_dir / 'metrics.json'} cannot be read: {error}") from None
    return ReportRun(run_dir, load_recipe(run_dir / "recipe.yaml"), metrics)


def find_runs(
    paths: Sequence[str | os.PathLike[str]],
) -> tuple[list[ReportRun], set[Path], list[str]]:
    """The finished runs under ``paths``, in order; the run directories of the cells that sweeps
    selected on validation; and notes (runs of a sweep that have not finished).

    A path is a run directory (it holds ``metrics.json``) or a folder of runs: a sweep
    (``<cell>/seed<k>/``, ordered as its ``summary.json``) or any folder whose children or
    grandchildren are run directories.
    """
    runs: list[ReportRun] = []
    selected: set[Path] = set()
    notes: list[str] = []
    seen: set[Path] = set()
    if not paths:
        raise SynergicError("give at least one run or sweep directory")
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise SynergicError(f"{path} is not a directory: give run or sweep directories")
        if (path / "metrics.json").is_file():
            run_dirs = [path]
        else:
            run_dirs, sweep_selected, sweep_notes = _sweep_run_dirs(path)
            selected |= sweep_selected
            notes += sweep_notes
            if not run_dirs:
                raise SynergicError(
                    f"{path} holds no finished run: neither metrics.json nor run directories "
                    "(<cell>/seed<k>/metrics.json) below it"
                )
        for run_dir in run_dirs:
            key = run_dir.resolve()
            if key not in seen:
                seen.add(key)
                runs.append(_read_run(run_dir))
    return runs, selected, notes


def _sweep_run_dirs(folder: Path) -> tuple[list[Path], set[Path], list[str]]:
    found = sorted({p.parent for p in folder.glob("*/metrics.json")}
                   | {p.parent for p in folder.glob("*/*/metrics.json")})
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        return found, set(), []
    try:
        summary = json.loads(summary_path.read_text())
        cells = summary["cells"]
        ordered = [folder / r["run_dir"] for c in cells for r in c["runs"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SynergicError(
            f"{summary_path} cannot be read ({error}): rerun the sweep to rewrite it"
        ) from None
    notes = [f"{p} is in {summary_path} but has no metrics.json" for p in ordered
             if not (p / "metrics.json").is_file()]
    in_summary = [p for p in ordered if (p / "metrics.json").is_file()]
    known = {p.resolve() for p in in_summary}
    extra = [p for p in found if p.resolve() not in known]  # runs of other grids in the same folder
    selected = {(folder / r["run_dir"]).resolve()
                for c in cells if c["cell"] == summary.get("selected") for r in c["runs"]}
    return in_summary + extra, selected, notes


# ---------------------------------------------------------------------------------- the rows


@dataclass
class RunGroup:
    """Runs of one experiment (recipes equal but for the seed): one row of the report."""

    runs: list[ReportRun]
    label: str = ""
    selected: bool = False
    keys: dict[str, Any] = field(default_factory=dict)
    """The differing recipe keys (besides the name) that tell this row from the others."""
    short: dict[str, str] = field(default_factory=dict)
    """``key=value`` with the key shortened to its last part where that is unambiguous, by key."""
    short_label: str = ""
    """A label for legends: the short ``key=value`` texts (and the name where names differ)."""

    @property
    def recipe(self) -> Recipe:
        return self.runs[0].recipe

    @property
    def augmented(self) -> bool:
        augment = self.recipe.data.augment
        return bool(augment.rotation > 0 or augment.hflip or augment.vflip)

    def stat(self, metric: str, split: str = "test") -> dict[str, Any]:
        """Mean and std over the runs of ``metric`` on ``split`` (``test`` or ``validation``)."""
        values = []
        for run in self.runs:
            section = run.metrics.get(split) or {}
            values.append(section.get(metric))
        return mean_std(values)

    def has_validation(self) -> bool:
        return all(run.metrics.get("validation") for run in self.runs)

    @property
    def training_seconds(self) -> float | None:
        times = [run.training_seconds for run in self.runs]
        return None if any(t is None for t in times) else float(np.mean(times))


def group_runs(runs: Sequence[ReportRun]) -> list[RunGroup]:
    """Runs whose recipes differ only in seed (and in result-neutral keys) form one group, in the
    order of their first run; each group is labelled by its recipe name and the keys that set it
    apart from the other groups."""
    groups: list[RunGroup] = []
    for run in runs:
        for group in groups:
            if not _differences(group.recipe, run.recipe):
                group.runs.append(run)
                break
        else:
            groups.append(RunGroup([run]))
    for group in groups:
        group.runs.sort(key=lambda r: r.seed)
    _label(groups)
    return groups


def _differences(a: Recipe, b: Recipe) -> list[str]:
    return recipe_differences(a, b, keys=_COMPARED, ignore=_GROUP_IGNORED)


def _label(groups: list[RunGroup]) -> None:
    differing: list[str] = []
    for group in groups[1:]:
        for key in _differences(groups[0].recipe, group.recipe):
            if key not in differing and key != "name":
                differing.append(key)
    order = _flat_keys(groups[0].recipe.model_dump(mode="json"))
    differing.sort(key=lambda key: order.index(key) if key in order else len(order))
    # The DA column shows augmentation on/off; keep its keys in the label only when more differs.
    augment_keys = [k for k in differing if k.startswith("data.augment.")]
    configs = {
        json.dumps(g.recipe.data.augment.model_dump(), sort_keys=True)
        for g in groups if g.augmented
    }
    if len(configs) <= 1:
        differing = [k for k in differing if k not in augment_keys]
    last_parts = [key.rsplit(".", 1)[-1] for key in differing]
    short_keys = {key: part if last_parts.count(part) == 1 else key
                  for key, part in zip(differing, last_parts)}
    names_differ = len({g.recipe.name for g in groups}) > 1
    augmentation_differs = len({g.augmented for g in groups}) > 1
    for group in groups:
        group.keys = {key: value_at(group.recipe, key) for key in differing}
        group.short = {
            key: f"{short_keys[key]}={_show(value)}" for key, value in group.keys.items()
        }
        parts = [group.recipe.name] if names_differ or not differing else []
        parts += list(group.short.values())
        if augmentation_differs:
            parts.append("DA" if group.augmented else "no DA")
        group.short_label = ", ".join(parts)
        shown = [f"{key}={_show(value)}" for key, value in group.keys.items()]
        label = group.recipe.name
        if shown:
            more = f", +{len(shown) - 4} more" if len(shown) > 4 else ""
            label += " (" + ", ".join(shown[:4]) + more + ")"
        group.label = label
    counts: dict[str, int] = {}
    for group in groups:
        counts[group.label] = counts.get(group.label, 0) + 1
    for group in groups:
        if counts[group.label] > 1:
            group.label += f" [{group.runs[0].run_dir}]"


def _flat_keys(value: Any, prefix: str = "") -> list[str]:
    """Dotted leaf keys in the recipe's (schema) order."""
    if not isinstance(value, dict) or not value:
        return [prefix]
    keys: list[str] = []
    for key, item in value.items():
        keys += _flat_keys(item, f"{prefix}.{key}" if prefix else str(key))
    return keys


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return json.dumps(value)


# ---------------------------------------------------------------------------------- test labels


def read_test_labels(run: ReportRun, _cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities [N, K], labels [N])`` of the run's test images, in predictions.csv order.

    Labels come from a ``label`` column of ``predictions.csv``, else from ``test_labels.csv``
    (``image,label``; a class index or name), else from the run's test split, opened through its
    recipe. Raises :class:`SynergicError` when they cannot be had or do not cover every image.
    """
    classes = list(run.metrics.get("classes") or [])
    path = run.run_dir / "predictions.csv"
    header, body = _read_csv(path, missing=f"{run.run_dir} has no predictions.csv")
    if not classes:
        classes = [c for c in header[1:] if c != "label"]
    try:
        columns = [header.index(c) for c in classes]
    except ValueError:
        raise SynergicError(f"{path}: its header {header} lacks the classes {classes}") from None
    ids = [r[0] for r in body]
    try:
        probabilities = np.array([[float(r[c]) for c in columns] for r in body], dtype=np.float64)
    except ValueError as error:
        raise SynergicError(f"{path}: a probability is not a number ({error}): restore the file "
                            "from the run or rerun it") from None
    if "label" in header and "label" not in classes:
        column = header.index("label")
        by_id = {r[0]: r[column] for r in body}
    elif (run.run_dir / "test_labels.csv").is_file():
        labels_path = run.run_dir / "test_labels.csv"
        labels_header, labels_body = _read_csv(labels_path)
        if labels_header[:2] != ["image", "label"]:
            raise SynergicError(
                f"{labels_path}: its header is {labels_header}, expected image,label: "
                "restore the file from the run, or delete it to take the labels from the data set"
            )
        by_id = {r[0]: r[1] for r in labels_body}
    else:
        by_id = _labels_from_dataset(run, _cache if _cache is not None else {})
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise SynergicError(
            f"{run.run_dir}: no test label for image '{missing[0]}' (and {len(missing) - 1} more)"
        )
    try:
        labels = np.array([_class_index(by_id[i], classes) for i in ids], dtype=np.int64)
    except ValueError:
        bad = next(by_id[i] for i in ids if not _is_class(by_id[i], classes))
        raise SynergicError(
            f"{run.run_dir}: test label {bad!r} is neither a class ({', '.join(classes)}) nor a "
            "class index: restore test_labels.csv from the run"
        ) from None
    return probabilities, labels


def _read_csv(path: Path, missing: str | None = None) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)`` of a CSV file that synergic wrote; blank lines are skipped. Raises a
    one-line :class:`SynergicError` for a file that is missing, not UTF-8, not CSV, empty, or
    whose rows do not have as many fields as its header."""
    redo = "rerun the run with this synergic, which quotes such names, or restore the file"
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle, strict=True) if row]
    except FileNotFoundError:
        raise SynergicError(missing or f"{path} not found") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise SynergicError(f"{path} is not a UTF-8 CSV file ({error}): {redo}") from None
    if not rows:
        raise SynergicError(f"{path} is empty: {redo}")
    header, body = rows[0], rows[1:]
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise SynergicError(
                f"{path}: row {number} has {len(row)} fields where the header has {len(header)} "
                f"(an image name with an unquoted comma?): {redo}"
            )
    return header, body


def _is_class(value: Any, classes: list[str]) -> bool:
    try:
        _class_index(value, classes)
        return True
    except ValueError:
        return False


def _class_index(value: Any, classes: list[str]) -> int:
    if isinstance(value, (int, np.integer)):
        return int(value)
    text = str(value)
    for name in (text, text.strip()):  # a class name may itself begin or end with a space
        if name in classes:
            return classes.index(name)
    index = float(text)
    if not index.is_integer() or not 0 <= index < len(classes):
        raise ValueError(f"{text!r} is not a class index")
    return int(index)


def _labels_from_dataset(run: ReportRun, cache: dict) -> dict[str, int]:
    key = json.dumps(run.recipe.data.model_dump(mode="json"), sort_keys=True)
    if key not in cache:
        from synergic.experiment import open_datasets

        _, _, test = open_datasets(run.recipe)
        # printable_name: the ids as predictions.csv holds them (a plugin's ids may not be UTF-8)
        cache[key] = {printable_name(str(i)): int(label) for i, label in zip(test.ids, test.labels)}
    return cache[key]


# -------------------------------------------------------------------------------------- figures


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


def _roc_figure(groups: Sequence[RunGroup], path: Path, notes: list[str]) -> Path | None:
    """One ROC curve per row (its first seed): on one plot for two-class runs, one panel per class
    (one-vs-rest) for more; the classes of the first row that has a curve decide which."""
    from sklearn.metrics import roc_auc_score, roc_curve

    from synergic.plots import curve_label, one_vs_rest_figure

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
    if not entries:
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


def _lambda_figure(groups: Sequence[RunGroup], path: Path, metric: str) -> Path | None:
    series = {name: members for name, members in _series(groups, LAMBDA_KEY).items()
              if len({value_at(g.recipe, LAMBDA_KEY) for g in members}) > 1}
    if not series:
        return None
    splits = (["validation"] if any(g.has_validation() for m in series.values() for g in m) else [])
    splits.append("test")
    figure, axes = _figure(panels=len(splits))
    for ax, split in zip(axes, splits):
        for name, members in series.items():
            points = sorted(
                ((value_at(g.recipe, LAMBDA_KEY), g.stat(metric, split)) for g in members),
                key=lambda point: point[0],
            )
            points = [(x, s) for x, s in points if s["mean"] is not None]
            if not points:
                continue
            ax.errorbar([x for x, _ in points], [s["mean"] for _, s in points],
                        yerr=[s["std"] or 0.0 for _, s in points], marker="o", capsize=3,
                        label=name if len(series) > 1 else None)
        ax.set_xlabel("lambda (train.synergic_weight)")
        ax.set_ylabel(f"{metric} ({split})")
        ax.set_title(f"{metric} against lambda, {split} set")
        ax.grid(True, linewidth=0.5, alpha=0.4)
        if len(series) > 1:
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
                "metric": group.stat(metric), "seconds": time,
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


# -------------------------------------------------------------------------------------- report


@dataclass
class Report:
    """What :func:`write_report` wrote."""

    path: Path
    groups: list[RunGroup]
    figures: dict[str, Path]
    notes: list[str]
    paper: bool = False
    """Whether the paper's rows were added."""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


ISIC2016_OFFICIAL_COUNTS: dict[str, dict[str, int]] = {
    "train": {"benign": 727, "malignant": 173},
    "test": {"benign": 304, "malignant": 75},
}
"""Images per class of the official ISIC 2016 Part 3 split (ISBI 2016 challenge): the 900
training images (here with any validation split carved from them) and the 379 test images on which
the paper reports."""


def paper_applies(runs: Sequence[ReportRun]) -> tuple[bool, list[str]]:
    """Whether the paper's ISIC 2016 numbers compare with ``runs``, and why not.

    They do when every run's recipe has ``data.dataset: isic2016`` and its ``metrics.json`` data
    record (when it has one: runs of older versions do not) counts the official split's images per
    class, :data:`ISIC2016_OFFICIAL_COUNTS` (train and validation together against ``train``).
    Returns ``(applies, reasons)``, one reason per run that does not qualify.
    """
    reasons = []
    for run in runs:
        dataset = run.recipe.data.dataset
        if dataset != "isic2016":
            reasons.append(f"{run.run_dir} is on the data set {dataset}, not isic2016")
            continue
        record = run.metrics.get("data")
        if not isinstance(record, dict):
            continue
        train: dict[str, int] = {}
        for split in ("train", "validation"):
            for name, count in (record.get(split) or {}).items():
                train[name] = train.get(name, 0) + int(count)
        counts = {"train": train, "test": dict(record.get("test") or {})}
        if counts != ISIC2016_OFFICIAL_COUNTS:
            reasons.append(
                f"{run.run_dir} reads {sum(train.values())} training and validation and "
                f"{sum(counts['test'].values())} test images of ISIC 2016, not the official 900 "
                "and 379"
            )
    return not reasons, reasons


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
    metric: str = "ap",
) -> Report:
    """Write the Markdown report of the runs and sweeps in ``paths`` to ``output``, with its
    figures beside it (``<stem>_roc.png``, ``<stem>_lambda.png``, ``<stem>_components.png``).

    ``output`` defaults to ``report.md`` beside what is reported on
    (:func:`default_report_path`). ``metric`` is the one plotted against lambda and time.
    ``paper`` adds the paper's reported numbers (Tables 1 and 2) as reference rows; by default
    (None) only when every run is on the official ISIC 2016 split (:func:`paper_applies`).

    Raises:
        SynergicError: ``output`` not ending in ``.md``, a path that holds no finished run, or (for
            the default output) paths with no common folder but the file system's root.
    """
    from synergic.paper import AP_NOTE, CITATION, FIGURE_FINDINGS, TABLE_1, TABLE_2

    output = default_report_path(paths) if output is None else Path(output)
    if output.suffix.lower() != ".md":
        raise SynergicError(f"--output {output}: the report is Markdown; give a path ending in .md")
    runs, selected, notes = find_runs(paths)
    if paper is None:
        paper, reasons = paper_applies(runs)
        if not paper and any(run.recipe.data.dataset == "isic2016" for run in runs):
            notes.append(f"the paper's rows are left out: {reasons[0]} (--paper adds them)")
    groups = group_runs(runs)
    for group in groups:
        group.selected = any(run.run_dir.resolve() in selected for run in group.runs)
    stem = output.with_suffix("")
    figures: dict[str, Path] = {}

    lines = ["# synergic report", ""]
    lines.append(f"{len(runs)} runs in {len(groups)} rows. Values are mean ± sample standard "
                 "deviation over the seeds of a row (runs whose recipes differ only in the seed).")
    lines.append("")
    show_validation = any(g.has_validation() for g in groups)
    header = ["run", "DA", "runs"] + ([f"validation {metric}"] if show_validation else [])
    header += [_COLUMN_TITLES[m] for m in REPORTED_METRICS] + ["training time"]
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
        row += [format_stat(group.stat(m)) for m in REPORTED_METRICS]
        row.append(_duration(group.training_seconds))
        lines.append("| " + " | ".join(row) + " |")
    if paper:
        for reported in TABLE_1:
            row = [f"{reported.method}, paper (reported)", "Y" if reported.augmentation else "N",
                   "", *([""] if show_validation else []), "", f"{reported.ap:.4f}*",
                   f"{reported.accuracy:.4f}", f"{reported.auc:.4f}", ""]
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    if paper:
        lines += [f"Rows marked *paper (reported)* are Table 1 of {CITATION} (ISIC 2016 test set). "
                  f"{AP_NOTE}", ""]
    else:
        lines += ["AP is scikit-learn's step-wise average precision (today's ISIC scorer); AP "
                  "(trapezoid) is the pre-0.19 trapezoid definition (docs/metrics.md).", ""]

    roc = _roc_figure(groups, stem.parent / f"{stem.name}_roc.png", notes)
    if roc is not None:
        figures["roc"] = roc
        lines += ["## ROC curves (Fig. 3)", "",
                  f"![ROC curves]({roc.name})", "",
                  "One curve per row (its first seed), from the run's predictions.csv."
                  + (f" The paper: {FIGURE_FINDINGS['fig3']}" if paper else ""), ""]

    lam = _lambda_figure(groups, stem.parent / f"{stem.name}_lambda.png", metric)
    if lam is not None:
        figures["lambda"] = lam
        lines += [f"## {metric} against lambda (Fig. 4)", "",
                  f"![{metric} against lambda]({lam.name})", "",
                  "Choose lambda on the validation set, then read its test value."
                  + (f" The paper: {FIGURE_FINDINGS['fig4']}" if paper else ""), ""]

    rows = _components_rows(groups, metric)
    if rows:
        comp = _components_figure(rows, stem.parent / f"{stem.name}_components.png", metric)
        lines += ["## SDL^n: performance against training time (Fig. 5)", ""]
        if comp is not None:
            figures["components"] = comp
            lines += [f"![{metric} against relative training time]({comp.name})", ""]
        lines += ["| series | n | run | " + f"test {metric} | training time | relative time |",
                  "|---|---|---|---|---|---|"]
        for r in rows:
            relative = "n/a" if r["relative_time"] is None else f"{r['relative_time']:.2f}"
            lines.append(f"| {r['series']} | {r['n']} | {r['label']} | "
                         f"{format_stat(r['metric'])} | "
                         f"{_duration(r['seconds'])} | {relative} |")
        lines += ["", "Training time is read from each run's log.csv (validation and checkpoints "
                  "included, data preparation excluded), averaged over seeds, relative to the "
                  "smallest n of its series; times are comparable only between runs on the same "
                  "hardware." + (f" The paper: {FIGURE_FINDINGS['fig5']}" if paper else ""), ""]

    if paper:
        lines += ["## The ISIC 2016 leaderboard (paper, Table 2)", "",
                  "| method | AP* | accuracy | AUC |", "|---|---|---|---|"]
        for reported in TABLE_2:
            lines.append(f"| {reported.method}, paper (reported) | {reported.ap:.3f} | "
                         f"{reported.accuracy:.3f} | {reported.auc:.3f} |")
        lines += ["", "\\* the challenge ranked by AP alone, computed with scikit-learn < 0.19: "
                  "the trapezoid definition (compare with AP (trapezoid) above).", ""]

    lines += ["## Runs", ""]
    for group in groups:
        dirs = ", ".join(f"`{run.run_dir}` (seed {run.seed})" for run in group.runs)
        lines.append(f"- {group.label}: {dirs}")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    lines.append("")
    # Run folders and recipe values are file names: any that are not UTF-8 are written as \xNN.
    _write_text(output, printable_name("\n".join(lines)))
    return Report(output, groups, figures, notes, paper)


def _write_text(path: Path, text: str) -> None:
    from synergic.rundir import write_text_atomically

    write_text_atomically(path, text)

