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

import itertools
import json
import math
import os
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synergic.errors import SynergicError, did_you_mean
from synergic.recipe import Recipe, load_recipe
from synergic.rundir import RESULT_NEUTRAL_KEYS  # shared with resume: never change results
from synergic.rundir import KEEP_CHECKPOINTS_MANY_RUNS, with_keep_checkpoints_default

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
    "check_finished",
    "summarize_sweep",
    "write_summary",
    "mean_std",
    "check_metric_name",
    "format_stat",
    "value_at",
]

#: The test metrics a summary (and a report) shows, in the order of the paper's Table 1 plus the
#: trapezoid AP (see docs/metrics.md).
REPORTED_METRICS: tuple[str, ...] = ("ap", "ap_trapezoid", "accuracy", "auc")

# Characters kept in a cell's folder name; anything else (a "/" in a path value, spaces, quotes)
# becomes "_" so that a value can never escape the sweep folder.
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+@-]")
_MAX_NAME = 200


# ------------------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class GridAxis:
    """One ``--grid KEY=V1,V2,...``: a dotted recipe key and its values as written."""

    key: str
    texts: tuple[str, ...]

    @property
    def text(self) -> str:
        return f"{self.key}={','.join(self.texts)}"


def parse_grid(text: str) -> GridAxis:
    """Parse ``KEY=V1,V2,...``; values are split at commas outside brackets and quotes.

    Each value is YAML, as in ``--set`` (``0.5``, ``true``, ``resnet18``, ``[1, 2]``,
    ``"a,b"``). Raises a one-line :class:`SynergicError` for a missing ``=``, an empty key or
    value, or a value given twice.
    """
    key, equals, raw = text.partition("=")
    key = key.strip()
    if not equals or not key:
        raise SynergicError(
            f"--grid {text!r}: expected KEY=V1,V2,..., e.g. --grid train.synergic_weight=0,1,3"
        )
    if not all(key.split(".")):
        raise SynergicError(
            f"--grid {text!r}: '{key}' is not a dotted key path such as train.optimizer.lr"
        )
    values = _split_top_level(raw)
    if any(not v for v in values):
        raise SynergicError(
            f"--grid {text!r}: a value is empty; write KEY=V1,V2 with no empty value"
        )
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise SynergicError(f"--grid {text!r}: the value {repeated[0]!r} is given twice")
    return GridAxis(key, tuple(values))


def _split_top_level(raw: str) -> list[str]:
    parts, depth, quote, current = [], 0, "", []
    for char in raw:
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts


def value_at(recipe: Recipe, key: str) -> Any:
    """The resolved value of the dotted ``key`` in ``recipe`` (as JSON: a mapping stays one)."""
    node: Any = recipe.model_dump(mode="json")
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: a cell of the grid with one seed."""

    cell: str
    """The cell's folder name, ``key1=v1,key2=v2`` (the recipe's name when there is no grid)."""
    settings: dict[str, str]
    """The grid's values of this cell as written, by key."""
    seed: int
    run_dir: Path
    recipe: Recipe = field(repr=False)

    @property
    def label(self) -> str:
        return f"{self.cell} seed {self.seed}"


class SweepCellError(SynergicError):
    """A run of the sweep failed; ``run`` says which."""

    def __init__(self, message: str, run: SweepRun) -> None:
        super().__init__(message)
        self.run = run


def _cell_name(axes: Sequence[GridAxis], texts: Sequence[str], fallback: str) -> str:
    if not axes:
        name = _UNSAFE.sub("_", fallback) or "recipe"
    else:
        name = ",".join(f"{axis.key}={_UNSAFE.sub('_', t)}" for axis, t in zip(axes, texts))
    if len(name) > _MAX_NAME:  # one path component must stay under the file system's limit
        import hashlib

        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = name[: _MAX_NAME - 13] + "-" + digest
    if name in (".", ".."):
        name = "_" + name
    return name


def plan_sweep(
    recipe: str | os.PathLike[str],
    grids: Sequence[str | GridAxis] = (),
    *,
    seeds: int = 1,
    overrides: Sequence[str] = (),
    output: str | os.PathLike[str],
) -> list[SweepRun]:
    """Every run of the sweep, in order: the cartesian product of ``grids`` (first grid slowest),
    then the seeds. Each cell's recipe is loaded and validated here, so a mistake in any cell fails
    before anything runs.

    Args:
        recipe: a recipe file or a built-in recipe name.
        grids: ``KEY=V1,V2,...`` strings (or parsed :class:`GridAxis`).
        seeds: runs per cell; run ``k`` uses the cell recipe's seed + ``k``.
        overrides: ``--set KEY=VALUE`` applied to every cell before the grid's values.
        output: the sweep folder; run ``k`` of a cell goes to ``output/<cell>/seed<seed>``.
    """
    from synergic.recipe import check_registry_names

    if seeds < 1:
        raise SynergicError(f"--seeds must be at least 1, got {seeds}")
    axes = [g if isinstance(g, GridAxis) else parse_grid(g) for g in grids]
    keys = [a.key for a in axes]
    for key in keys:
        if keys.count(key) > 1:
            raise SynergicError(f"--grid {key} is given twice: put all its values in one --grid")
    set_keys = {o.partition("=")[0].strip() for o in overrides}
    for key in keys:
        if key in set_keys:
            raise SynergicError(f"{key} is both in --set and in --grid: keep one of them")
    output = Path(output)
    base = load_recipe(recipe, overrides)
    runs: list[SweepRun] = []
    names: dict[str, tuple[str, ...]] = {}
    for texts in itertools.product(*(a.texts for a in axes)):
        cell_overrides = [*overrides, *(f"{a.key}={t}" for a, t in zip(axes, texts))]
        try:
            cell_recipe = load_recipe(recipe, cell_overrides) if axes else base
        except SynergicError as error:
            raise type(error)(_as_grid_message(str(error), axes, texts)) from None
        # A sweep's runs keep only the reported model's checkpoint unless the recipe says else.
        cell_recipe = with_keep_checkpoints_default(cell_recipe, KEEP_CHECKPOINTS_MANY_RUNS)
        name = _cell_name(axes, texts, base.name)
        if name in names and names[name] != texts:
            raise SynergicError(
                f"--grid values {names[name]} and {texts} give the same folder name '{name}': "
                "write them differently"
            )
        names[name] = texts
        check_registry_names(cell_recipe, source=f"{recipe} ({name})" if axes else str(recipe))
        for k in range(seeds):
            seed = cell_recipe.seed + k
            run_recipe = cell_recipe.model_copy(update={"seed": seed}) if k else cell_recipe
            runs.append(SweepRun(
                cell=name, settings=dict(zip(keys, texts)), seed=seed,
                run_dir=output / name / f"seed{seed}", recipe=run_recipe,
            ))
    return runs


def _as_grid_message(message: str, axes: Sequence[GridAxis], texts: Sequence[str]) -> str:
    # The loader names the override as "--set KEY=VALUE"; the user wrote it in --grid.
    for axis, text in zip(axes, texts):
        prefix = f"--set {axis.key}={text}"
        if message.startswith(prefix):
            return f"--grid {axis.key} (value {text})" + message[len(prefix):]
    return message


# -------------------------------------------------------------------------------------- running


def run_state(run_dir: str | os.PathLike[str]) -> str:
    """Where a sweep run stands: ``"finished"`` (metrics.json), ``"interrupted"`` (a checkpoint to
    resume), ``"started"`` (a run that stopped before its first checkpoint), ``"empty"`` or
    ``"other"`` (files that are not a synergic run)."""
    from synergic.experiment import run_directory_state

    run_dir = Path(run_dir)
    if (run_dir / "metrics.json").is_file():
        return "finished"
    if (run_dir / "checkpoints" / "last.pt").is_file():
        return "interrupted"
    state = run_directory_state(run_dir)
    return {"run": "started"}.get(state, state)


def _same_experiment(saved: Recipe, wanted: Recipe) -> list[str]:
    # The same rule as resume: a finished cell is kept exactly when it could have been resumed.
    from synergic.rundir import absolute_paths, identity_differences

    return identity_differences(saved, absolute_paths(wanted))


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


def execute_runs(
    runs: Sequence[Any],
    *,
    command: str = "sweep",
    where: Callable[[Any], str] = lambda run: f"cell {run.label}",
    on_event: Callable[[str, Any, int, int], None] | None = None,
    callbacks: Callable[[Any], Sequence[object]] | None = None,
    on_stage: Callable[[str], None] | None = None,
    progress: bool = False,
    executor: Any = None,
) -> None:
    """Run ``runs`` (each with ``run_dir``, ``recipe`` and ``label``: a :class:`SweepRun`, a
    :class:`synergic.cv.FoldRun`) one after another in this process, resumably: a finished run is
    kept (after checking that its recipe is this run's), an interrupted one resumed, an empty one
    started. ``command`` and ``where(run)`` name a run in errors (``sweep cell a=1 seed 0``).

    With ``executor`` (a submitit executor: ``submitit.AutoExecutor(folder, cluster="slurm")``,
    ``submitit.LocalExecutor(folder)``), each run that has not finished is one job instead, all
    submitted at once (see :func:`launch_runs`); ``callbacks``, ``on_stage`` and ``progress``
    then do not apply.

    Raises:
        SweepCellError: the first run that fails or is stopped (SIGTERM, Ctrl-C), naming it;
            finished runs stay, so the same call continues.
    """
    from synergic.experiment import run as run_experiment

    if executor is not None:
        launch_runs(runs, executor, command=command, where=where, on_event=on_event)
        return
    notify = on_event or (lambda action, run, index, total: None)
    for index, sweep_run in enumerate(runs, start=1):
        state = run_state(sweep_run.run_dir)
        if state == "finished":
            check_finished(sweep_run, f"{command} {where(sweep_run)}")
            notify("skip", sweep_run, index, len(runs))
            continue
        if state == "other":
            raise SweepCellError(
                f"{command} {where(sweep_run)}: {sweep_run.run_dir} holds files that are not a "
                "synergic run: move them away or choose another --output", sweep_run
            )
        action = "resume" if state == "interrupted" else "start"
        notify(action, sweep_run, index, len(runs))
        try:
            run_experiment(
                sweep_run.recipe, sweep_run.run_dir, resume=action == "resume",
                # a run that stopped before its first checkpoint has nothing worth keeping
                overwrite=state == "started", progress=progress,
                callbacks=callbacks(sweep_run) if callbacks else (), on_stage=on_stage,
            )
        except SynergicError as error:
            from synergic.training.trainer import TrainingInterrupted

            if isinstance(error, TrainingInterrupted):
                raise SweepCellError(
                    f"{command} stopped in {where(sweep_run)} ({error}): run the same {command} "
                    "command again to continue", sweep_run
                ) from None
            raise SweepCellError(
                f"{command} {where(sweep_run)} failed: {error}", sweep_run
            ) from error
        except Exception as error:
            if hasattr(error, "add_note"):  # Python >= 3.11: the traceback names the run
                error.add_note(f"(in {command} {where(sweep_run)}, {sweep_run.run_dir})")
            raise
        notify("done", sweep_run, index, len(runs))


def launch_runs(
    runs: Sequence[Any],
    executor: Any,
    *,
    command: str = "sweep",
    where: Callable[[Any], str] = lambda run: f"cell {run.label}",
    on_event: Callable[[str, Any, int, int], None] | None = None,
) -> None:
    """Submit each run of ``runs`` that has not finished as one job of ``executor`` (a submitit
    executor), wait for them all, and raise the first failure. A job runs
    :func:`execute_runs` on its one run, so it resumes from the run's ``last.pt`` whenever it
    starts again: run the same command after a job was cancelled or timed out, or let submitit
    requeue a preempted job (the job is :class:`submitit.helpers.Checkpointable`).

    ``on_event`` is told ``"skip"`` for a finished run, ``"submit"`` for each job (its id in
    ``run.job_id`` is not set: see the executor's folder) and ``"done"`` as each ends.

    Raises:
        SweepCellError: one line naming the first run whose job failed (or was stopped), with
            its error and the job's log file.
    """
    notify = on_event or (lambda action, run, index, total: None)
    pending = []
    for index, run in enumerate(runs, start=1):
        if run_state(run.run_dir) == "finished":
            check_finished(run, f"{command} {where(run)}")
            notify("skip", run, index, len(runs))
        else:
            pending.append((index, run))
    if not pending:
        return
    job = _RunJob(command, where)
    try:
        with executor.batch():
            jobs = [executor.submit(job, run) for _, run in pending]
    except (ValueError, TypeError) as error:  # e.g. a parameter the cluster does not know
        raise SweepCellError(f"{command}: the jobs could not be submitted ({error})",
                             pending[0][1]) from None
    for (index, run), submitted in zip(pending, jobs):
        notify("submit", run, index, len(runs))
    failures = []
    for (index, run), submitted in zip(pending, jobs):
        try:
            message = submitted.result()  # the job's one-line error, None when it finished
        except Exception as error:  # noqa: BLE001 - submitit's FailedJobError, UncompletedJobError
            raised = re.findall(r"^[\w.]*(?:Error|Exception): (.+)$", str(error), re.MULTILINE)
            message = (f"{command} {where(run)} failed: "
                       f"{raised[-1] if raised else type(error).__name__}")
        if message is None:
            notify("done", run, index, len(runs))
        else:
            failures.append((run, f"{message} (job {submitted.job_id}, log: "
                                  f"{submitted.paths.stderr})"))
    if failures:
        run, message = failures[0]
        more = f"; {len(failures) - 1} more failed" if len(failures) > 1 else ""
        raise SweepCellError(message + more, run)


class _RunJob:
    """What a submitit job runs: :func:`execute_runs` on one run (checkpointable: a preempted
    job is requeued and resumes from the run's last.pt)."""

    def __init__(self, command: str, where: Callable[[Any], str]) -> None:
        self.command, self.where = command, where

    def __call__(self, run: Any) -> str | None:
        try:
            execute_runs([run], command=self.command, where=self.where)
        except SweepCellError as error:  # one line for the submitting process to raise
            return str(error)
        return None

    def checkpoint(self, run: Any):
        import submitit

        return submitit.helpers.DelayedSubmission(self, run)


def check_finished(sweep_run: Any, what: str) -> None:
    """Refuse a finished run (``run_dir``, ``recipe``) whose recipe is not ``sweep_run.recipe``
    (the same rule as resume); ``what`` names it in the error."""
    saved_path = sweep_run.run_dir / "recipe.yaml"
    if not saved_path.is_file():
        raise SweepCellError(
            f"{what}: {sweep_run.run_dir} has metrics.json but no "
            "recipe.yaml, so it cannot be checked: delete that folder to rerun it", sweep_run
        )
    changed = _same_experiment(load_recipe(saved_path), sweep_run.recipe)
    if changed:
        raise SweepCellError(
            f"{what}: {sweep_run.run_dir} finished with another recipe "
            f"(differs in {', '.join(changed[:5])}): use another --output, or delete that folder "
            "to rerun it", sweep_run
        )


def check_metric_name(metric: str, option: str = "--select-metric") -> None:
    """Raise a one-line :class:`SynergicError` unless ``metric`` is a metric synergic computes."""
    from synergic.metrics import METRIC_NAMES_BINARY, METRIC_NAMES_MULTICLASS

    names = list(dict.fromkeys(METRIC_NAMES_BINARY + METRIC_NAMES_MULTICLASS))
    if metric not in names:
        raise SynergicError(
            f"{option} {metric!r} is not a metric{did_you_mean(metric, names)}: "
            f"use one of {', '.join(names)}"
        )


# -------------------------------------------------------------------------------------- summary


def mean_std(values: Sequence[float | None]) -> dict[str, Any]:
    """``{"mean", "std", "n", "values"}`` over the finite values (NaN is stored as null in
    metrics.json). ``std`` is the sample standard deviation (n - 1), null for fewer than two."""
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return {
        "mean": statistics.fmean(kept) if kept else None,
        "std": statistics.stdev(kept) if len(kept) > 1 else None,
        "n": len(kept),
        "values": [None if v is None else float(v) for v in values],
    }


def format_stat(stat: Mapping[str, Any] | None, digits: int = 4) -> str:
    """``0.6536 ± 0.0123`` (or just the mean for one value, ``n/a`` for none)."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    text = f"{stat['mean']:.{digits}f}"
    if stat.get("std") is not None:
        text += f" ± {stat['std']:.{digits}f}"
    return text


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
    select_metric: str = "ap",
    description: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Per cell, the mean and std over seeds of every test metric and validation metric, read from
    the runs' ``metrics.json``; and the cell with the best mean validation ``select_metric``."""
    output = Path(output)
    cells: dict[str, dict[str, Any]] = {}
    for sweep_run in runs:
        cell = cells.setdefault(sweep_run.cell, {
            "cell": sweep_run.cell,
            "settings": {key: value_at(sweep_run.recipe, key) for key in sweep_run.settings},
            "runs": [], "_test": [], "_validation": [],
        })
        metrics = _read_metrics(sweep_run.run_dir)
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

    selected, note = _select(list(cells.values()), select_metric)
    return {
        **(dict(description) if description else {}),
        "select_metric": select_metric,
        "cells": list(cells.values()),
        "selected": selected,
        "selection_note": note,
    }


def _select(cells: list[dict[str, Any]], metric: str) -> tuple[str | None, str]:
    missing = [c["cell"] for c in cells if c["validation"] is None]
    if missing:
        if len(missing) == len(cells):
            return None, (
                "no validation split, so no cell is selected (selecting on the test set would "
                "overstate the result): add one with --set data.validation_fraction=0.2"
            )
        return None, f"cells without a validation split ({', '.join(missing)}): nothing selected"
    scored = [(c["validation"].get(metric, {}).get("mean"), k) for k, c in enumerate(cells)]
    scored = [(value, k) for value, k in scored if value is not None]
    if not scored:
        return None, f"no cell has a validation {metric}: nothing selected"
    best = max(scored, key=lambda item: (item[0], -item[1]))[1]  # ties: the first cell
    seeds = cells[best]["validation"][metric]["n"]
    over = f" over {seeds} seeds" if seeds > 1 else ""
    return cells[best]["cell"], f"selected by the highest mean validation {metric}{over}"


def write_summary(summary: Mapping[str, Any], output: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``summary.md`` into ``output``; returns their paths."""
    from synergic.experiment import json_safe, write_text_atomically

    output = Path(output)
    json_path, md_path = output / "summary.json", output / "summary.md"
    # The recipe path, overrides and grid values may be file names that are not UTF-8 (\xNN).
    summary = _printable(summary)
    write_text_atomically(json_path, json.dumps(json_safe(dict(summary)), indent=2) + "\n")
    write_text_atomically(md_path, summary_markdown(summary))
    return json_path, md_path


def _printable(value: Any) -> Any:
    """``value`` with every string (keys too) as :func:`synergic.data.names.printable_name`."""
    from synergic.data.names import printable_name

    if isinstance(value, str):
        return printable_name(value)
    if isinstance(value, Mapping):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable(v) for v in value]
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
    if seeds:
        lines.append(f"Seeds per cell: {seeds} (the recipe's seed, then + 1, ...); "
                     "values are mean ± sample standard deviation over seeds.")
    lines.append("")
    header = ["cell", "seeds", f"validation {metric}"]
    header += [_COLUMN_TITLES[m] for m in REPORTED_METRICS]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for cell in cells:
        name = cell["cell"]
        if name == summary.get("selected"):
            name = f"**{name}** (selected)"
        validation = "no split"
        if cell["validation"]:
            validation = format_stat(cell["validation"].get(metric))
        row = [name, str(len(cell["runs"])), validation]
        row += [format_stat(cell["test"].get(m)) for m in REPORTED_METRICS]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    if summary.get("selected"):
        cell = next(c for c in cells if c["cell"] == summary["selected"])
        lines.append(
            f"**Selected: `{cell['cell']}`**, {summary['selection_note']} "
            f"({format_stat(cell['validation'][metric])}); its test AP is "
            f"{format_stat(cell['test'].get('ap'))}."
        )
    else:
        lines.append(f"Nothing selected: {summary['selection_note']}.")
    lines += ["", "AP is scikit-learn's step-wise average precision (today's ISIC scorer); "
              "AP (trapezoid) is the pre-0.19 definition that the paper most likely used "
              "(docs/metrics.md). Compare sweeps and the paper with `synergic report`.", ""]
    return "\n".join(lines)


_COLUMN_TITLES = {"ap": "test AP", "ap_trapezoid": "AP (trapezoid)", "accuracy": "accuracy",
                  "auc": "AUC"}
