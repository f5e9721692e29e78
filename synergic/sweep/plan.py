"""Planning a sweep: the grid (``--grid KEY=V1,V2,...``), its cells and seeds, each a
:class:`SweepRun` with its validated recipe and run directory; or, with ``--folds``, each cell a
cross-validation (:class:`CrossValidatedCell`). Nothing runs here."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synergic.errors import SynergicError
from synergic.recipe import Recipe, load_recipe
from synergic.rundir import KEEP_CHECKPOINTS_MANY_RUNS, with_keep_checkpoints_default

if TYPE_CHECKING:
    from synergic.cv import CrossValidationPlan

__all__ = [
    "CrossValidatedCell", "GridAxis", "SweepRun", "parse_grid", "plan_cv_sweep", "plan_sweep",
    "value_at",
]

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


@dataclass(frozen=True)
class CrossValidatedCell:
    """One cell of a sweep run as a cross-validation (``synergic sweep --folds K``)."""

    cell: str
    """The cell's folder name, as in :class:`SweepRun`."""
    settings: dict[str, str]
    """The grid's values of this cell as written, by key."""
    plan: CrossValidationPlan = field(repr=False)
    """Its folds (:func:`synergic.cv.plan_cv`): ``output/<cell>/repeat-R/fold-F``; each
    :class:`synergic.cv.FoldRun` has ``cell`` set."""


def plan_cv_sweep(
    recipe: str | os.PathLike[str],
    grids: Sequence[str | GridAxis] = (),
    *,
    folds: int,
    repeats: int = 1,
    group_by: str | None = None,
    overrides: Sequence[str] = (),
    output: str | os.PathLike[str],
) -> list[CrossValidatedCell]:
    """Every cell of the sweep (as :func:`plan_sweep` with one seed) as a cross-validation of the
    cell's recipe (:func:`synergic.cv.plan_cv` with ``folds``, ``repeats``, ``group_by``) into
    ``output/<cell>/``. Every cell's recipe and folds are made here, so a mistake in any cell
    fails before anything runs.

    Raises:
        SynergicError: what :func:`plan_sweep` and :func:`synergic.cv.plan_cv` refuse; an error
            of one cell's folds names the cell.
    """
    import dataclasses

    from synergic.cv import plan_cv

    output = Path(output)
    cells = []
    for sweep_run in plan_sweep(recipe, grids, overrides=overrides, output=output):
        try:
            plan = plan_cv(sweep_run.recipe, folds=folds, repeats=repeats, group_by=group_by,
                           output=output / sweep_run.cell)
        except SynergicError as error:
            raise type(error)(f"sweep cell {sweep_run.cell}: {error}") from None
        runs = [dataclasses.replace(run, cell=sweep_run.cell) for run in plan.runs]
        cells.append(CrossValidatedCell(sweep_run.cell, sweep_run.settings,
                                        dataclasses.replace(plan, runs=runs)))
    return cells
