"""The evidence beside a report's numbers: the paired SDL-vs-ensemble comparison, the thresholds
and calibration of each row, and cross-validation summaries.

Nothing is recomputed differently from the commands that first compute it: the paired comparison
is ``synergic compare``'s (:func:`synergic.compare.compare_runs`, i.e.
:func:`synergic.stats.paired_comparison` with DeLong's test), the calibration entries are read
from each run's ``metrics.json`` (:func:`synergic.metrics.threshold_and_calibration`), and a
cross-validation's statistics from its ``summary.json`` (:func:`synergic.cv.summarize_cv`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from synergic.errors import SynergicError
from synergic.recipe import recipe_differences
from synergic.report.runs import _COMPARED, _GROUP_IGNORED, ReportRun, RunGroup
from synergic.stats import DEFAULT_N_BOOTSTRAP, mean_std

__all__ = [
    "calibration_rows",
    "cv_sdl_ensemble_comparisons",
    "sdl_ensemble_comparisons",
    "sdl_ensemble_pairs",
]

LAMBDA_KEY = "train.synergic_weight"

def sdl_ensemble_pairs(groups: Sequence[RunGroup]) -> list[tuple[RunGroup, RunGroup]]:
    """``(ensemble, SDL)`` pairs of rows: SDL^n with ``train.synergic_weight > 0`` and the same
    ``n >= 2`` networks trained without the synergic term (``train.synergic_weight = 0``), their
    recipes otherwise equal (seed, name and result-neutral keys aside). In the rows' order."""
    def weight(group: RunGroup) -> float:
        return float(group.recipe.train.synergic_weight)

    ensembles = [g for g in groups if g.recipe.model.components >= 2 and weight(g) == 0.0]
    sdls = [g for g in groups if g.recipe.model.components >= 2 and weight(g) > 0.0]
    ignored = (*_GROUP_IGNORED, LAMBDA_KEY)
    return [
        (ensemble, sdl) for ensemble in ensembles for sdl in sdls
        if not recipe_differences(ensemble.recipe, sdl.recipe, keys=_COMPARED, ignore=ignored)
    ]


def _run_pairs(ensemble: RunGroup, sdl: RunGroup) -> list[tuple[ReportRun, ReportRun]]:
    # Runs of equal seed; rows with no seed in common: their first runs (pairing is over the
    # test images, so runs of different seeds still pair).
    by_seed = {run.seed: run for run in sdl.runs}
    pairs = [(run, by_seed[run.seed]) for run in ensemble.runs if run.seed in by_seed]
    return pairs or [(ensemble.runs[0], sdl.runs[0])]


def sdl_ensemble_comparisons(
    groups: Sequence[RunGroup],
    notes: list[str],
    *,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The paired comparison of every pair of :func:`sdl_ensemble_pairs`, seed by seed: what
    ``synergic compare ENSEMBLE_RUN SDL_RUN`` gives, in the same metric
    (:func:`synergic.compare.default_compare_metric` of the runs' primary metric: AUC for a data
    set ranked by AP, else its primary metric; ``metric`` in each result): the difference SDL -
    ensemble, its paired-bootstrap 95 % interval, and DeLong's p-value for AUC; plus
    ``ensemble`` and ``sdl`` (the rows' labels). Pairs whose test sets differ are left out with a
    note appended to ``notes``.
    """
    from synergic.compare import compare_runs

    comparisons = []
    for ensemble, sdl in sdl_ensemble_pairs(groups):
        for run_a, run_b in _run_pairs(ensemble, sdl):
            try:
                result = compare_runs(run_a.run_dir, run_b.run_dir, n_bootstrap=n_bootstrap,
                                      seed=seed)
            except SynergicError as error:
                notes.append(f"SDL vs ensemble: {error}; left out")
                continue
            comparisons.append({**result, "ensemble": ensemble.label, "sdl": sdl.label,
                                "seed_a": run_a.seed, "seed_b": run_b.seed})
    return comparisons


def _entry(metrics: dict[str, Any], *path: str) -> float | None:
    node: Any = metrics
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    if isinstance(node, bool) or not isinstance(node, (int, float)) or not math.isfinite(node):
        return None
    return float(node)


#: The calibration columns of the report: title and the path of the entry in ``metrics.json``.
CALIBRATION_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Brier", ("calibration", "brier")),
    ("ECE", ("calibration", "ece")),
    ("threshold (Youden, validation)", ("threshold", "youden")),
    ("sensitivity at it", ("threshold", "test_at_youden", "sensitivity")),
    ("specificity at it", ("threshold", "test_at_youden", "specificity")),
    ("specificity at 89 % sensitivity", ("threshold", "specificity_at_sensitivity", "0.89")),
    ("Brier, prior-corrected", ("prior_correction", "test", "brier")),
    ("ECE, prior-corrected", ("prior_correction", "test", "ece")),
)


def calibration_rows(groups: Sequence[RunGroup]) -> tuple[list[str], list[tuple[RunGroup, list]]]:
    """``(column titles, [(row, [mean_std dict per column])])`` of the calibration and threshold
    entries of the rows' ``metrics.json`` (two-class runs), mean and std over each row's seeds.
    Rows without a ``calibration`` entry (more classes, older runs) and columns no row has are
    left out."""
    rows = [g for g in groups if any("calibration" in run.metrics for run in g.runs)]
    stats = [
        (group, [mean_std([_entry(run.metrics, *path) for run in group.runs])
                 for _, path in CALIBRATION_COLUMNS])
        for group in rows
    ]
    kept = [k for k in range(len(CALIBRATION_COLUMNS))
            if any(values[k]["n"] for _, values in stats)]
    return ([CALIBRATION_COLUMNS[k][0] for k in kept],
            [(group, [values[k] for k in kept]) for group, values in stats])


def cv_sdl_ensemble_comparisons(
    cross_validations: Sequence[Any],
    notes: list[str],
    *,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """SDL vs ensemble in sweeps of cross-validations over ``train.synergic_weight``: in each
    sweep, the cell with weight 0 (the ensemble) against every cell with a weight above 0 whose
    other grid values are equal, paired on their out-of-fold predictions, repeat by repeat
    (:func:`synergic.compare.compare_cross_validations`, what ``synergic compare CV_A CV_B``
    gives). Each result is that function's dict plus ``sweep``, ``ensemble`` and ``sdl`` (the
    cells' names). A pair that cannot be compared is left out with a note in ``notes``."""
    from synergic.compare import compare_cross_validations

    sweeps: dict[Any, list[Any]] = {}
    for cv in cross_validations:
        if cv.sweep is not None and LAMBDA_KEY in cv.settings:
            sweeps.setdefault(cv.sweep, []).append(cv)
    comparisons = []
    for sweep, cells in sweeps.items():
        def others(cell: Any) -> dict[str, Any]:
            return {k: v for k, v in cell.settings.items() if k != LAMBDA_KEY}

        for ensemble in (c for c in cells if float(c.settings[LAMBDA_KEY]) == 0.0):
            for sdl in cells:
                if float(sdl.settings[LAMBDA_KEY]) <= 0.0 or others(sdl) != others(ensemble):
                    continue
                if not all((c.path / "oof_predictions.csv").is_file() for c in (ensemble, sdl)):
                    continue  # summaries without their folds (copied alone): nothing to pair
                try:
                    result = compare_cross_validations(ensemble.path, sdl.path,
                                                       n_bootstrap=n_bootstrap, seed=seed)
                except SynergicError as error:
                    notes.append(f"SDL vs ensemble (out of fold): {error}; left out")
                    continue
                comparisons.append({**result, "sweep": str(sweep), "ensemble": ensemble.cell,
                                    "sdl": sdl.cell})
    return comparisons
