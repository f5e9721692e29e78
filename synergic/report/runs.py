"""The runs a report is about: finding them (run directories, sweeps, folders of runs), reading
them (recipe, metrics, test labels, training time), and grouping the seeds of one experiment into
a row."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synergic.data.names import printable_name
from synergic.errors import SynergicError
from synergic.recipe import Recipe, load_recipe, recipe_differences
from synergic.stats import mean_std
from synergic.sweep import RESULT_NEUTRAL_KEYS, value_at

__all__ = [
    "CrossValidation",
    "ISIC2016_OFFICIAL_COUNTS",
    "ReportRun",
    "RunGroup",
    "find_cross_validations",
    "find_runs",
    "group_runs",
    "paper_applies",
    "read_test_labels",
    "training_seconds",
]

_GROUP_IGNORED = (*RESULT_NEUTRAL_KEYS, "seed")
_COMPARED = ("name", "seed", "data", "model", "train")


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
    (``<cell>/seed<k>/``, ordered as its ``summary.json``; runs it keeps of an earlier grid are
    left out with a note) or any folder whose children or grandchildren are run directories.
    Cross-validations are found by :func:`find_cross_validations`; what a folder holds is
    :func:`synergic.folders.folder_kind`'s.
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
                    f"{path} holds no finished run: give a run directory (metrics.json), a "
                    "sweep (<cell>/seed<k>/), a cross-validation (repeat-R/fold-F/ and "
                    "summary.json) or a sweep of cross-validations (<cell>/repeat-R/fold-F/)"
                )
        for run_dir in run_dirs:
            key = run_dir.resolve()
            if key not in seen:
                seen.add(key)
                runs.append(_read_run(run_dir))
    return runs, selected, notes


@dataclass
class CrossValidation:
    """A finished cross-validation (``synergic cv``): its folder and its ``summary.json``
    (:func:`synergic.cv.summarize_cv`: per metric ``mean``, ``std``, ``n``, ``values``, ``ci``)."""

    path: Path
    summary: dict[str, Any]
    sweep: Path | None = None
    """The sweep folder when this is a cell of ``synergic sweep --folds``; None for ``cv``."""
    cell: str | None = None
    """The sweep cell's name (``key=value,...``), when ``sweep`` is set."""
    selected: bool = False
    """Whether the sweep selected this cell (its best mean held-out-fold metric)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """The sweep cell's grid values by key (``{"train.synergic_weight": 3.0}``), when ``sweep``
    is set."""

    @property
    def label(self) -> str:
        """The recipe and its ``--set`` overrides, as the ``synergic cv`` command gave them."""
        overrides = " ".join(f"--set {o}" for o in self.summary.get("overrides") or [])
        return " ".join(filter(None, [str(self.summary.get("recipe", self.path.name)), overrides]))


def _read_cv_summary(path: Path, command: str = "synergic cv") -> dict[str, Any]:
    summary_path = path / "summary.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        tests = summary["test"]
        if not isinstance(tests, dict) or "folds" not in summary:
            raise KeyError("folds")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SynergicError(
            f"{summary_path} cannot be read as a cross-validation summary ({error}): run the "
            f"same {command} command again to rewrite it"
        ) from None
    return summary


def _sweep_cross_validations(folder: Path) -> list[CrossValidation]:
    """The cells of a finished ``synergic sweep --folds`` in ``folder``, in its summary's order."""
    summary_path = folder / "summary.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        cells = [(cell["cell"], folder / cell["cv_dir"], dict(cell.get("settings") or {}))
                 for cell in summary["cells"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SynergicError(
            f"{summary_path} cannot be read as the summary of a sweep of cross-validations "
            f"({error}): run the same synergic sweep command again to rewrite it"
        ) from None
    return [CrossValidation(path, _read_cv_summary(path, "synergic sweep"), sweep=folder,
                            cell=name, selected=name == summary.get("selected"),
                            settings=settings)
            for name, path, settings in cells]


def find_cross_validations(
    paths: Sequence[str | os.PathLike[str]],
) -> tuple[list[CrossValidation], list[Path], list[str]]:
    """Split ``paths`` into cross-validation folders (``synergic cv``'s output: ``repeat-R/fold-F``
    run directories and ``summary.json``), sweeps of cross-validations (``synergic sweep
    --folds``: one such folder per cell, and the sweep's ``summary.json``; each cell is one
    :class:`CrossValidation`) and the rest, for :func:`find_runs`.

    Returns ``(cross-validations, other paths, notes)``; a cross-validation or sweep without its
    ``summary.json`` (still running, or interrupted) is left out with a note.

    Raises:
        SynergicError: a ``summary.json`` that cannot be read or is not a cross-validation's.
    """
    from synergic.folders import folder_kind

    found: list[CrossValidation] = []
    rest: list[Path] = []
    notes: list[str] = []
    for raw in paths:
        path = Path(raw)
        kind = folder_kind(path) if path.is_dir() else None
        finished = (path / "summary.json").is_file()
        if kind == "cv" and finished:
            found.append(CrossValidation(path, _read_cv_summary(path)))
        elif kind == "cv":
            notes.append(f"{path} is a cross-validation without summary.json: it has not "
                         "finished; run the same synergic cv command again")
        elif kind == "cv_sweep" and finished:
            found += _sweep_cross_validations(path)
            notes += _not_in_sweep_notes(path)
        elif kind == "cv_sweep":
            notes.append(f"{path} holds cross-validations (<cell>/repeat-R/fold-F) but no "
                         "summary.json: a sweep with --folds that has not finished (run the "
                         "same synergic sweep command again), or give the cross-validation "
                         "folders themselves")
        else:
            rest.append(path)
    return found, rest, notes


def _not_in_sweep_notes(folder: Path) -> list[str]:
    # Runs kept in a sweep folder that its last grid did not plan: named, never mixed in.
    from synergic.folders import unplanned_runs

    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        planned = [folder / r["run_dir"] for c in summary["cells"] for r in c["runs"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [f"{folder / name} is in the sweep folder but not part of its sweep (summary.json): "
            "left out; give it as its own path to report it"
            for name in unplanned_runs(folder, planned)]


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
    # Runs of an earlier grid (or --seeds) kept in the same folder are named, not mixed in.
    notes += _not_in_sweep_notes(folder)
    selected = {(folder / r["run_dir"]).resolve()
                for c in cells if c["cell"] == summary.get("selected") for r in c["runs"]}
    return in_summary, selected, notes


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

    def interval(self, metric: str) -> list[float] | None:
        """``[low, high]``: the 95 % bootstrap interval over the test images of ``metric``
        (``test_ci`` of ``metrics.json``, :func:`synergic.stats.metric_intervals`) for a row of
        one run; None for a row of several runs (their spread is :meth:`stat`'s std), a run
        recorded without intervals (``train.n_bootstrap: 0``, older versions) or an undefined one.
        """
        if len(self.runs) != 1:
            return None
        interval = (self.runs[0].metrics.get("test_ci") or {}).get(metric)
        if not isinstance(interval, (list, tuple)) or len(interval) != 2:
            return None
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in interval):
            return None
        return [float(interval[0]), float(interval[1])]

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
    if not groups:
        return
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

