"""Is run B better than run A on the same test images? Two finished runs, paired image by image.

:func:`compare_runs` reads both runs' test predictions, checks that they hold the same test images
under the same labels, and hands them to :func:`synergic.stats.paired_comparison` (the paired
bootstrap interval of the difference, and DeLong's test for AUC). ``synergic compare`` prints
its result, and ``synergic report`` uses it for its SDL-vs-ensemble lines, so both give the
same numbers. :func:`compare_cross_validations` does the same for two cross-validations over the
same folds, on their pooled out-of-fold predictions, repeat by repeat.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from synergic.errors import SynergicError
from synergic.stats import DEFAULT_N_BOOTSTRAP

__all__ = ["compare_cross_validations", "compare_runs", "default_compare_metric"]

#: The metric compared when the runs' data set ranks by AP (or names no metric): AUC, the one
#: DeLong's test gives a p-value for.
FALLBACK_METRIC = "auc"


def default_compare_metric(primary_metric: str | None) -> str:
    """The metric ``synergic compare`` compares without ``--metric``: the runs' primary metric
    (``metrics.json``'s ``primary_metric``: ``task_auc`` for ISIC 2017, ``balanced_accuracy`` for
    2018 and 2019, ``auc`` for 2020), except that AP (ISIC 2016, and every data set that names no
    metric) gives way to :data:`FALLBACK_METRIC`, AUC, which DeLong's test can also test."""
    if primary_metric in (None, "ap"):
        return FALLBACK_METRIC
    return primary_metric


def compare_runs(run_a: Path, run_b: Path, *, metric: str | None = None,
                 n_bootstrap: int = DEFAULT_N_BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """:func:`synergic.stats.paired_comparison` of two finished runs' test predictions.

    ``metric``: a key of the runs' ``metrics.json`` ``test`` entry; None:
    :func:`default_compare_metric` of the runs' primary metric. The runs' task classes
    (``metrics.json``'s ``task_classes``, ISIC 2017) make ``task_auc`` and ``auc_<class>``
    comparable.

    Reads each run's ``predictions.csv`` and its test labels
    (:func:`synergic.report.read_test_labels`), checks that both runs hold the same test images
    under the same labels and classes, and pairs the images by id.

    Returns:
        :func:`~synergic.stats.paired_comparison`'s dict (``difference = b - a``) plus
        ``run_a``, ``run_b``, ``images`` (the number of test images) and ``same_data`` (whether
        the runs' whole data fingerprints agree, or only their test sets).

    Raises:
        SynergicError: a folder that is not a finished run, runs whose classes, primary metrics
            (without ``metric``) or test sets differ (the first difference named), or an unknown
            metric.
    """
    import numpy as np

    from synergic.stats import paired_comparison

    first, second = _test_predictions(Path(run_a)), _test_predictions(Path(run_b))
    if first["classes"] != second["classes"]:
        raise SynergicError(
            f"cannot compare {run_a} and {run_b}: their classes differ "
            f"({', '.join(first['classes'])} vs {', '.join(second['classes'])})"
        )
    problem = _test_set_difference(first, second)
    pixels = first["test_pixels"], second["test_pixels"]
    if problem is None and None not in pixels and pixels[0] != pixels[1]:
        # Same names and labels, other content: another copy of the data, or another image size.
        problem = "the same image names and labels, but other pixels (data.pixels.test in metrics.json)"
    if problem:
        raise SynergicError(
            f"cannot compare {run_a} and {run_b}: their test sets differ ({problem}); a paired "
            "comparison needs both runs evaluated on the same test images"
        )
    if metric is None:
        metric = _shared_default_metric(run_a, run_b, first, second)
    order = {image: row for row, image in enumerate(second["ids"])}
    aligned = np.array([order[image] for image in first["ids"]])
    probabilities_b = second["probabilities"][aligned]
    result = paired_comparison(
        first["probabilities"], probabilities_b, first["labels"], metric=metric,
        classes=first["classes"], task_classes=first["task_classes"] or second["task_classes"],
        n_bootstrap=n_bootstrap, seed=seed,
    )
    fingerprints = first["fingerprint"], second["fingerprint"]
    if None in fingerprints:
        same_data = "test set checked image by image; a run records no data fingerprint"
    elif None in pixels:
        same_data = (f"data fingerprint {fingerprints[0][:12]} in both; pixels not recorded"
                     if fingerprints[0] == fingerprints[1] else
                     "their training or validation images differ")
    elif fingerprints[0] == fingerprints[1]:
        same_data = f"data fingerprint {fingerprints[0][:12]} in both"
    else:
        same_data = "their training or validation images differ"
    return {**result, "run_a": str(run_a), "run_b": str(run_b),
            "images": len(first["ids"]), "same_data": same_data}


def _test_predictions(run_dir: Path) -> dict[str, Any]:
    """ids, probabilities, labels, classes and data fingerprint of a finished run's test set."""
    from synergic.recipe import load_recipe
    from synergic.report import ReportRun, read_test_labels

    if not run_dir.is_dir():
        raise SynergicError(f"{run_dir} does not exist: pass the run directories that "
                            "`synergic run` printed")
    if not (run_dir / "metrics.json").is_file() or not (run_dir / "recipe.yaml").is_file():
        raise SynergicError(
            f"{run_dir} is not a finished synergic run (no metrics.json or recipe.yaml): pass "
            "the run directories that `synergic run` printed"
        )
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SynergicError(f"{run_dir / 'metrics.json'} cannot be read ({error}): rerun the "
                            "run or restore the file") from None
    run = ReportRun(run_dir, load_recipe(run_dir / "recipe.yaml"), metrics)
    probabilities, labels = read_test_labels(run)
    with (run_dir / "predictions.csv").open(newline="", encoding="utf-8") as handle:
        ids = [row[0] for row in list(csv.reader(handle))[1:] if row]
    classes = list(metrics.get("classes") or [])
    if not classes:
        classes = [f"class {k}" for k in range(probabilities.shape[1])]
    return {
        "ids": ids, "probabilities": probabilities, "labels": labels, "classes": classes,
        # Runs written before data sets named their metric selected on AP.
        "primary_metric": metrics.get("primary_metric") or "ap",
        "task_classes": [str(c) for c in metrics.get("task_classes") or []],
        "fingerprint": (metrics.get("data") or {}).get("fingerprint"),
        "test_pixels": ((metrics.get("data") or {}).get("pixels") or {}).get("test"),
    }


def _test_set_difference(first: dict[str, Any], second: dict[str, Any]) -> str | None:
    """The first difference between two runs' test rows (image, class), or None."""
    classes = first["classes"]
    rows = [
        dict(zip(run["ids"], (classes[int(k)] for k in run["labels"])))
        for run in (first, second)
    ]
    for run, which in ((first, "A"), (second, "B")):
        if len(set(run["ids"])) != len(run["ids"]):
            return f"run {which}'s predictions.csv lists an image twice"
    if len(rows[0]) != len(rows[1]):
        return f"A has {len(rows[0])} test images, B {len(rows[1])}"
    for image, label in rows[0].items():
        if image not in rows[1]:
            return f"image '{image}' is in A's test set, not in B's"
        if rows[1][image] != label:
            return f"image '{image}' is {label} in A, {rows[1][image]} in B"
    return None


def compare_cross_validations(cv_a: Path, cv_b: Path, *, metric: str | None = None,
                              n_bootstrap: int = DEFAULT_N_BOOTSTRAP, seed: int = 0
                              ) -> dict[str, Any]:
    """:func:`synergic.stats.paired_comparison` of two finished cross-validations (``synergic
    cv`` folders) on their out-of-fold predictions, one comparison per repeat.

    Each repeat pools the held-out predictions of its k fold runs (``oof_predictions.csv``), so
    every training image is scored once by each cross-validation, by a model that did not train
    on it; the labels are the fold runs' test labels. The two cross-validations must hold the same
    images in the same folds of every repeat (same data, ``--folds``, ``--repeats``, seed and
    groups), checked image by image: then image i was held out from both models that scored it,
    and the pairing removes its difficulty from the difference. What this assumes: the k models
    of a repeat are treated as one classifier (their scores pooled on one scale), and the
    interval reflects the images, not the training (a new draw of folds or seeds varies the
    difference too: compare the repeats).

    ``metric``: as :func:`compare_runs` (None: :func:`default_compare_metric` of the
    cross-validations' primary metric).

    Returns:
        ``{"metric", "cv_a", "cv_b", "images", "repeats": [paired_comparison dict plus
        "repeat", ...]}``, ``difference = b - a`` in each.

    Raises:
        SynergicError: a folder that is not a finished cross-validation, different classes,
            folds that differ (the first image named), labels that differ, or an unknown metric.
    """
    import numpy as np

    from synergic.stats import paired_comparison

    first, second = _out_of_fold(Path(cv_a)), _out_of_fold(Path(cv_b))
    if first["classes"] != second["classes"]:
        raise SynergicError(
            f"cannot compare {cv_a} and {cv_b}: their classes differ "
            f"({', '.join(first['classes'])} vs {', '.join(second['classes'])})"
        )
    folds_a, folds_b = first["folds"], second["folds"]
    if folds_a.keys() != folds_b.keys():
        raise SynergicError(
            f"cannot compare {cv_a} and {cv_b}: A has the repeats {sorted(folds_a)}, B "
            f"{sorted(folds_b)}; a paired comparison needs the same folds (the same --folds, "
            "--repeats, seed and data)"
        )
    for repeat in folds_a:
        for image, fold in folds_a[repeat].items():
            other = folds_b[repeat].get(image)
            if other != fold:
                where = "not in B" if other is None else f"in fold {other} of B"
                raise SynergicError(
                    f"cannot compare {cv_a} and {cv_b}: their folds differ (image '{image}' is "
                    f"in fold {fold} of repeat {repeat} in A, {where}); a paired comparison "
                    "needs the same folds: the same --folds, seed, groups and data"
                )
        if len(folds_b[repeat]) != len(folds_a[repeat]):
            raise SynergicError(
                f"cannot compare {cv_a} and {cv_b}: repeat {repeat} holds "
                f"{len(folds_a[repeat])} images in A, {len(folds_b[repeat])} in B"
            )
    if metric is None:
        metric = _shared_default_metric(cv_a, cv_b, first, second)
    results = []
    for repeat in sorted(folds_a):
        ids = list(folds_a[repeat])
        labels_a = np.array([first["labels"][image] for image in ids])
        labels_b = np.array([second["labels"][image] for image in ids])
        if not np.array_equal(labels_a, labels_b):
            image = ids[int(np.flatnonzero(labels_a != labels_b)[0])]
            raise SynergicError(f"cannot compare {cv_a} and {cv_b}: image '{image}' has another "
                                "label in A than in B: they read different data")
        probabilities_a = np.array([first["probabilities"][repeat][image] for image in ids])
        probabilities_b = np.array([second["probabilities"][repeat][image] for image in ids])
        result = paired_comparison(
            probabilities_a, probabilities_b, labels_a, metric=metric,
            classes=first["classes"], task_classes=first["task_classes"],
            n_bootstrap=n_bootstrap, seed=seed,
        )
        results.append({**result, "repeat": repeat, "images": len(ids)})
    return {"metric": metric, "cv_a": str(cv_a), "cv_b": str(cv_b),
            "images": results[0]["images"] if results else 0, "repeats": results}


def _out_of_fold(folder: Path) -> dict[str, Any]:
    """A finished cross-validation's out-of-fold predictions by repeat and image, its folds
    (repeat -> image -> fold), labels (image -> class index) and classes."""
    import numpy as np

    from synergic.folders import folder_kind

    summary_path, oof_path = folder / "summary.json", folder / "oof_predictions.csv"
    if folder_kind(folder) != "cv" or not summary_path.is_file() or not oof_path.is_file():
        raise SynergicError(
            f"{folder} is not a finished cross-validation (no summary.json and "
            "oof_predictions.csv): pass the folders that `synergic cv` wrote"
        )
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        run_dirs = [folder / run["run_dir"] for run in summary["runs"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SynergicError(f"{summary_path} cannot be read ({error}): run the same synergic cv "
                            "command again to rewrite it") from None
    labels: dict[str, int] = {}
    classes: list[str] = []
    task_classes: list[str] = []
    for run_dir in run_dirs:  # the held-out fold's labels, as each fold run evaluated them
        fold = _test_predictions(run_dir)
        classes = classes or fold["classes"]
        task_classes = task_classes or fold["task_classes"]
        labels.update(zip(fold["ids"], (int(k) for k in fold["labels"])))
    from synergic.report.runs import _read_csv

    header, rows = _read_csv(oof_path)
    if header[:3] != ["image", "fold", "repeat"] or header[3:] != classes:
        raise SynergicError(f"{oof_path}: its header is {header}, expected image,fold,repeat,"
                            f"{','.join(classes)}: run the same synergic cv command again")
    folds: dict[int, dict[str, int]] = {}
    probabilities: dict[int, dict[str, Any]] = {}
    try:
        for row in rows:
            repeat = int(row[2])
            folds.setdefault(repeat, {})[row[0]] = int(row[1])
            probabilities.setdefault(repeat, {})[row[0]] = np.array(row[3:], dtype=np.float64)
    except ValueError as error:
        raise SynergicError(f"{oof_path}: a row cannot be read ({error}): run the same "
                            "synergic cv command again") from None
    missing = [image for repeat in folds for image in folds[repeat] if image not in labels]
    if missing:
        raise SynergicError(f"{oof_path}: image '{missing[0]}' has no label in the fold runs' "
                            "test sets: run the same synergic cv command again")
    return {"folds": folds, "probabilities": probabilities, "labels": labels,
            "classes": classes, "task_classes": task_classes,
            "primary_metric": summary.get("primary_metric") or "ap"}


def _shared_default_metric(a, b, first: dict, second: dict) -> str:
    """The metric two results are compared on when none is given: their shared primary metric
    (:func:`default_compare_metric`). Raises :class:`SynergicError` when they rank differently."""
    if first["primary_metric"] != second["primary_metric"]:
        raise SynergicError(
            f"cannot compare {a} and {b} on their primary metric: A ranks by "
            f"{first['primary_metric']}, B by {second['primary_metric']}; choose one with "
            "--metric"
        )
    return default_compare_metric(first["primary_metric"])
