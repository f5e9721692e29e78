"""Sweeps: one recipe run over a grid of settings and several seeds, resumably.

The paper's evidence is a set of comparisons (Table 1, Figs. 3-5). A sweep runs each of them as
a grid::

    synergic sweep demo --grid train.synergic_weight=0,1,2,3,4,5 --seeds 2 --output runs/lambda

Every *cell* of the grid (one combination of values) is run once per seed (the recipe's seed,
then seed + 1, ...), one run after another, each into its own run directory::

    runs/lambda/
      train.synergic_weight=0/seed0/     a run directory of synergic.experiment.run
      train.synergic_weight=0/seed1/
      ...
      summary.json, summary.md           per cell: mean and std over seeds; the selected cell

Running the same command again continues where it stopped: a finished run (its ``metrics.json``
exists) is kept, an interrupted one (a checkpoint but no ``metrics.json``) is resumed. A finished
run keeps only the checkpoint of its reported model (:data:`KEEP_CHECKPOINTS_MANY_RUNS`, for
``train.keep_checkpoints: auto``), so a grid does not fill the disk.

The cell chosen is the one with the best mean *validation* metric, as the paper chose lambda on a
validation set (Sect. 5, Fig. 4): the test metrics of that cell are then an honest estimate, where
the best test value over a grid would not be.

With ``folds`` (``--folds K``), each cell is a cross-validation of its recipe instead of seeds
(:mod:`synergic.cv`), with its folds as runs::

    runs/lambda-cv/
      train.synergic_weight=0/            the cell's cross-validation folder, as synergic cv's
        repeat-0/fold-0/ ...              one run directory per fold
        summary.json, oof_predictions.csv
      ...
      summary.json, summary.md            per cell: mean, std and 95 % t-interval over its folds
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from synergic.errors import SynergicError
from synergic.folders import check_output_kind, unplanned_runs
from synergic.rundir import RESULT_NEUTRAL_KEYS  # shared with resume: never change results
from synergic.rundir import KEEP_CHECKPOINTS_MANY_RUNS
from synergic.stats import format_stat, mean_std
from synergic.sweep.execute import (
    SweepCellError,
    check_finished,
    execute_runs,
    launch_runs,
    run_state,
)
from synergic.sweep.plan import (
    CrossValidatedCell,
    GridAxis,
    SweepRun,
    parse_grid,
    plan_cv_sweep,
    plan_sweep,
    value_at,
)
from synergic.sweep.summary import (
    REPORTED_METRICS,
    check_metric_name,
    format_stat_interval,
    reported_metrics,
    summarize_cv_sweep,
    summarize_sweep,
    summary_markdown,
    write_summary,
)

__all__ = [
    "CrossValidatedCell",
    "GridAxis",
    "SweepRun",
    "SweepCellError",
    "REPORTED_METRICS",
    "reported_metrics",
    "RESULT_NEUTRAL_KEYS",
    "KEEP_CHECKPOINTS_MANY_RUNS",
    "parse_grid",
    "plan_sweep",
    "plan_cv_sweep",
    "run_state",
    "run_sweep",
    "execute_runs",
    "launch_runs",
    "check_finished",
    "summarize_sweep",
    "summarize_cv_sweep",
    "summary_markdown",
    "write_summary",
    "mean_std",
    "check_metric_name",
    "format_stat",
    "format_stat_interval",
    "value_at",
]


def run_sweep(
    recipe: str | os.PathLike[str],
    grids: Sequence[str | GridAxis] = (),
    *,
    seeds: int = 1,
    folds: int | None = None,
    repeats: int = 1,
    group_by: str | None = None,
    overrides: Sequence[str] = (),
    output: str | os.PathLike[str],
    select_metric: str | None = None,
    on_event: Callable[[str, Any, int, int], None] | None = None,
    callbacks: Callable[[Any], Sequence[object]] | None = None,
    on_stage: Callable[[str], None] | None = None,
    progress: bool = False,
    executor: Any = None,
) -> dict[str, Any]:
    """Run every cell of the sweep (see :func:`plan_sweep`), then write ``summary.json`` and
    ``summary.md`` into ``output`` and return the summary. With ``executor`` (a submitit
    executor) each run is a job (:func:`execute_runs`).

    With ``folds`` (k, at least 2), each cell is a cross-validation of its recipe
    (:func:`plan_cv_sweep`; ``repeats`` and ``group_by`` as in :func:`synergic.cv.plan_cv`)
    instead of ``seeds`` runs: every fold of every cell is a run (all of them jobs at once with
    ``executor``), each cell's folder gets its cross-validation's ``summary.json`` and
    ``oof_predictions.csv`` (:func:`synergic.cv.finish_cv`), and ``output/summary.json`` per
    cell the mean, std and 95 % t-interval over its folds (:func:`summarize_cv_sweep`).

    A finished run is kept (after checking that its recipe is this cell's), an interrupted one is
    resumed, an empty one is started. Runs in ``output`` that this sweep did not plan (cells of an
    earlier ``--grid``, seeds of a larger ``--seeds``) are kept, left out of the summary and
    listed in its ``not_in_sweep`` (paths relative to ``output``,
    :func:`synergic.folders.unplanned_runs`). The first run that fails stops the sweep with a
    :class:`SweepCellError` that names it; finished runs stay, so the same call continues.

    ``select_metric``: the validation metric that selects the cell; None: the runs' primary
    metric (their data set's, recorded in ``metrics.json``; ``ap`` unless the data set names
    another).

    ``on_event(action, run, index, total)`` is told ``"skip"``, ``"resume"`` or ``"start"`` before
    each run and ``"done"`` after it (``run``: a :class:`SweepRun`, or with ``folds`` a
    :class:`synergic.cv.FoldRun` whose ``cell`` is set); ``callbacks(run)`` gives the trainer
    callbacks of a run.

    Raises:
        SynergicError: ``seeds`` above 1 with ``folds``, ``repeats`` or ``group_by`` without
            them; ``output`` holding another kind of experiment (a run, a cross-validation, a
            sweep with or without folds: :func:`synergic.folders.check_output_kind`); what the
            planners refuse.
        SweepCellError: the first run that fails or is stopped.
    """
    if select_metric is not None:
        check_metric_name(select_metric)
    if folds is None and (repeats != 1 or group_by is not None):
        raise SynergicError("--repeats and --group-by apply to cross-validations: add --folds K")
    axes = [g if isinstance(g, GridAxis) else parse_grid(g) for g in grids]
    description = {"recipe": str(recipe), "overrides": list(overrides),
                   "grid": {a.key: list(a.texts) for a in axes}}
    # A folder holds one experiment: refuse a run, a cv or a sweep of the other kind at once.
    check_output_kind(output, "sweep" if folds is None else "cv_sweep")
    if folds is None:
        runs = plan_sweep(recipe, axes, seeds=seeds, overrides=overrides, output=output)
        execute_runs(runs, on_event=on_event, callbacks=callbacks, on_stage=on_stage,
                     progress=progress, executor=executor)
        summary = summarize_sweep(runs, output, select_metric=select_metric,
                                  description={**description, "seeds": seeds})
        summary["not_in_sweep"] = unplanned_runs(output, [run.run_dir for run in runs])
        write_summary(summary, output)
        return summary

    from synergic.cv import finish_cv

    if seeds != 1:
        raise SynergicError(
            f"--seeds {seeds} with --folds {folds}: a cell that is a cross-validation trains "
            "every fold with the recipe's seed; vary the folds with --repeats instead"
        )
    cells = plan_cv_sweep(recipe, axes, folds=folds, repeats=repeats, group_by=group_by,
                          overrides=overrides, output=output)
    execute_runs([run for cell in cells for run in cell.plan.runs], on_event=on_event,
                 callbacks=callbacks, on_stage=on_stage, progress=progress, executor=executor)
    cell_summaries = [
        finish_cv(cell.plan, description={
            "recipe": str(recipe), "cell": cell.cell,
            "overrides": [*overrides, *(f"{key}={text}" for key, text in cell.settings.items())],
        })
        for cell in cells
    ]
    summary = summarize_cv_sweep(cells, cell_summaries, output, select_metric=select_metric,
                                 description=description)
    summary["not_in_sweep"] = unplanned_runs(
        output, [run.run_dir for cell in cells for run in cell.plan.runs])
    write_summary(summary, output)
    return summary
