"""What an output folder holds: a run, a sweep, a sweep of cross-validations, a cross-validation.

Each command that writes many runs owns a folder of one layout::

    synergic run     DIR/recipe.yaml, checkpoints/, metrics.json ...       "run"
    synergic sweep   DIR/<cell>/seed<k>/  (a run each), summary.json       "sweep"
    synergic sweep --folds K
                     DIR/<cell>/repeat-R/fold-F/, summary.json             "cv_sweep"
    synergic cv      DIR/repeat-R/fold-F/, summary.json, oof_predictions   "cv"

:func:`folder_kind` tells them apart, from the ``summary.json`` when there is one and from the
layout when there is not (an experiment that has not finished), so that ``cv`` and ``sweep`` refuse
an ``--output`` that belongs to another kind of experiment before writing anything
(:func:`check_output_kind`), and ``report`` reads each folder as what it is. :func:`run_state`
says where one run directory of such a folder stands.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from synergic.errors import SynergicError

__all__ = [
    "KIND_NAMES", "check_output_kind", "folder_kind", "run_state", "unplanned_runs",
]

KIND_NAMES: dict[str, str] = {
    "empty": "nothing",
    "run": "run directory (synergic run)",
    "sweep": "sweep (synergic sweep)",
    "cv_sweep": "sweep of cross-validations (synergic sweep --folds)",
    "cv": "cross-validation (synergic cv)",
    "runs": "folder of runs",
    "other": "files that are not a synergic run",
}
"""What each kind of :func:`folder_kind` is, in words: "D holds a <name>"."""

_SEED = re.compile(r"seed-?\d+")
_REPEAT = re.compile(r"repeat-\d+")
_FOLD = re.compile(r"fold-\d+")


def run_state(run_dir: str | os.PathLike[str]) -> str:
    """Where one run of a sweep or cross-validation stands: ``"finished"`` (metrics.json),
    ``"interrupted"`` (a checkpoint to resume), ``"started"`` (a run that stopped before its first
    checkpoint), ``"empty"`` or ``"other"`` (files that are not a synergic run)."""
    from synergic.rundir import run_directory_state

    run_dir = Path(run_dir)
    if (run_dir / "metrics.json").is_file():
        return "finished"
    if (run_dir / "checkpoints" / "last.pt").is_file():
        return "interrupted"
    state = run_directory_state(run_dir)
    return {"run": "started"}.get(state, state)


def _entries(folder: Path) -> list[Path]:
    # Hidden entries (.submitit/ of the slurm launcher, .DS_Store) say nothing of the kind.
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError:
        return []


def _folds(folder: Path) -> list[Path]:
    return [fold for repeat in _entries(folder) if repeat.is_dir() and _REPEAT.fullmatch(repeat.name)
            for fold in _entries(repeat) if fold.is_dir() and _FOLD.fullmatch(fold.name)]


def _is_run(folder: Path) -> bool:
    return any((folder / name).exists() for name in ("recipe.yaml", "checkpoints", "metrics.json"))


def _summary_kind(folder: Path) -> str | None:
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):
        return None
    if "cells" in summary:
        return "cv_sweep" if summary.get("folds") else "sweep"
    if "folds" in summary and "test" in summary:
        return "cv"
    return None


def folder_kind(folder: str | os.PathLike[str]) -> str:
    """What ``folder`` holds, one of :data:`KIND_NAMES`: ``"empty"`` (missing, or only hidden
    entries), ``"run"`` (a run directory: ``recipe.yaml``, ``checkpoints/`` or ``metrics.json``),
    ``"cv"`` (``repeat-R/fold-F/``), ``"cv_sweep"`` (``<cell>/repeat-R/fold-F/``), ``"sweep"``
    (``<cell>/seed<k>/``), ``"runs"`` (any other folder whose children or grandchildren are run
    directories, e.g. ``runs/``) or ``"other"``.

    A ``summary.json`` written by ``synergic cv`` or ``synergic sweep`` decides; without one (an
    experiment still running, or interrupted) the layout does, so a folder is recognised from its
    first run on.
    """
    folder = Path(folder)
    entries = _entries(folder)
    if not entries:
        return "empty"
    if _is_run(folder):
        return "run"
    kind = _summary_kind(folder)
    if kind is not None:
        return kind
    if _folds(folder):
        return "cv"
    children = [child for child in entries if child.is_dir()]
    holding_runs = [child for child in children
                    if _is_run(child) or any(_is_run(g) for g in _entries(child) if g.is_dir())]
    if not holding_runs and any(_folds(child) for child in children):
        return "cv_sweep"
    seeded = [child for child in children
              if any(g.is_dir() and _SEED.fullmatch(g.name) for g in _entries(child))]
    if seeded and all(child in seeded for child in holding_runs):
        return "sweep"
    return "runs" if holding_runs else "other"


def check_output_kind(output: str | os.PathLike[str], kind: str) -> None:
    """Refuse, in one line, an ``--output`` folder that holds another kind of experiment than
    ``kind`` (``"cv"``, ``"sweep"``, ``"cv_sweep"``): a folder holds one experiment, whose
    summary.json and report would otherwise be overwritten or mixed. An empty or missing folder,
    or one of ``kind`` (to be continued), passes.

    Raises:
        SynergicError: ``"D holds a <kind>: use another --output"``.
    """
    found = folder_kind(output)
    if found in ("empty", kind):
        return
    if found == "other":
        raise SynergicError(f"{output} holds files that are not a synergic run: use another "
                            "--output (an empty or new folder)")
    raise SynergicError(f"{output} holds a {KIND_NAMES[found]}: use another --output")


def unplanned_runs(output: str | os.PathLike[str], planned: list[str | os.PathLike[str]]
                   ) -> list[str]:
    """The folders of runs in a sweep folder ``output`` that are not among the ``planned`` run
    directories: cells of an earlier grid (``train.synergic_weight=3``), seeds or folds of an
    earlier ``--seeds``/``--folds`` (``train.synergic_weight=0/seed1``), as paths relative to
    ``output`` in sorted order, a whole cell named once."""
    output = Path(output)
    planned_paths = {Path(p).resolve() for p in planned}
    planned_cells = {p.relative_to(output.resolve()).parts[0] for p in planned_paths
                     if p.is_relative_to(output.resolve())}
    found: list[str] = []
    for cell in _entries(output):
        if not cell.is_dir():
            continue
        runs = [run for run in _entries(cell) if run.is_dir() and _SEED.fullmatch(run.name)]
        runs += _folds(cell)
        if not runs:
            continue
        if cell.name not in planned_cells:
            found.append(cell.name)
            continue
        found += [run.relative_to(output).as_posix() for run in runs
                  if run.resolve() not in planned_paths]
    return found
