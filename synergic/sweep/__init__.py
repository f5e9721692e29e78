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
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

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
from synergic.sweep.plan import GridAxis, SweepRun, parse_grid, plan_sweep, value_at
from synergic.sweep.summary import (
    REPORTED_METRICS,
    check_metric_name,
    summarize_sweep,
    summary_markdown,
    write_summary,
)

__all__ = [
    "GridAxis",
    "SweepRun",
    "SweepCellError",
    "REPORTED_METRICS",
    "RESULT_NEUTRAL_KEYS",
    "KEEP_CHECKPOINTS_MANY_RUNS",
    "parse_grid",
    "plan_sweep",
    "run_state",
    "run_sweep",
    "execute_runs",
    "launch_runs",
    "check_finished",
    "summarize_sweep",
    "summary_markdown",
    "write_summary",
    "mean_std",
    "check_metric_name",
    "format_stat",
    "value_at",
]


def run_sweep(
    recipe: str | os.PathLike[str],
    grids: Sequence[str | GridAxis] = (),
    *,
    seeds: int = 1,
    overrides: Sequence[str] = (),
    output: str | os.PathLike[str],
    select_metric: str = "ap",
    on_event: Callable[[str, SweepRun, int, int], None] | None = None,
    callbacks: Callable[[SweepRun], Sequence[object]] | None = None,
    on_stage: Callable[[str], None] | None = None,
    progress: bool = False,
    executor: Any = None,
) -> dict[str, Any]:
    """Run every cell of the sweep (see :func:`plan_sweep`), then write ``summary.json`` and
    ``summary.md`` into ``output`` and return the summary. With ``executor`` (a submitit
    executor) each run is a job (:func:`execute_runs`).

    A finished run is kept (after checking that its recipe is this cell's), an interrupted one is
    resumed, an empty one is started. The first run that fails stops the sweep with a
    :class:`SweepCellError` that names it; finished runs stay, so the same call continues.

    ``on_event(action, run, index, total)`` is told ``"skip"``, ``"resume"`` or ``"start"`` before
    each run and ``"done"`` after it; ``callbacks(run)`` gives the trainer callbacks of a run.
    """
    check_metric_name(select_metric)
    axes = [g if isinstance(g, GridAxis) else parse_grid(g) for g in grids]
    runs = plan_sweep(recipe, axes, seeds=seeds, overrides=overrides, output=output)
    execute_runs(runs, on_event=on_event, callbacks=callbacks, on_stage=on_stage,
                 progress=progress, executor=executor)
    summary = summarize_sweep(
        runs, output, select_metric=select_metric,
        description={"recipe": str(recipe), "overrides": list(overrides),
                     "grid": {a.key: list(a.texts) for a in axes}, "seeds": seeds},
    )
    write_summary(summary, output)
    return summary

