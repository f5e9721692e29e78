"""Cross-validation: stratified k-fold over a data set's training split, each fold a run.

One test split of a few hundred images gives one noisy number. A k-fold cross-validation trains the
recipe k times, each time holding out a different k-th of the *training* images as the test set,
and reports the mean over folds with its spread::

    synergic cv demo --folds 5 --repeats 2 --output runs/demo-cv

    runs/demo-cv/
      repeat-0/fold-0/      a run directory of synergic.experiment.run: its test set is fold 0
      repeat-0/fold-1/      ...
      summary.json          per metric: mean, std and a 95 % t-interval over the folds
      oof_predictions.csv   image,fold,repeat,<class probabilities>: every training image's
                            probabilities from the one run of each repeat that did not train on it

How a fold becomes a run: the fold is written into the run's recipe as
``data.cross_validation`` (:class:`~synergic.recipe.schema.CrossValidationConfig`), and
:func:`synergic.experiment.open_datasets` then makes the held-out fold the run's test set and
the other folds its training set; the recipe's ``data.validation_fraction`` carves the validation
split inside those, as for any run, and a validation split of the data set's own stays the
validation split of every fold. The data set's
test split is not used: it stays untouched for the final model. So each fold's ``recipe.yaml``
says which fold it is, its identity covers it, and its data fingerprint covers the split.

Folds are scikit-learn's: :class:`~sklearn.model_selection.StratifiedKFold` (every fold keeps the
class proportions), or :class:`~sklearn.model_selection.StratifiedGroupKFold` when the data set
gives a group per image (:data:`synergic.data.datasets.base.GROUPS_ATTRIBUTE`: a lesion or patient
id; images of one group never straddle training and test). Repeat ``r`` is the ``r``-th shuffle of
one ``numpy.random.RandomState(seed)`` stream, as
:class:`~sklearn.model_selection.RepeatedStratifiedKFold` draws it, ``seed`` being the recipe's
seed.

Running the same command again continues where it stopped, as a sweep does
(:func:`synergic.sweep.execute_runs`): finished folds are kept, interrupted ones resumed; each
fold run keeps only its reported model's checkpoint
(:data:`synergic.rundir.KEEP_CHECKPOINTS_MANY_RUNS`).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch.utils.data

from synergic.errors import SynergicError, did_you_mean
from synergic.recipe import Recipe
from synergic.stats import CI_LEVEL, mean_std_interval, t_interval

__all__ = [
    "CONFIDENCE",
    "FoldRun",
    "FoldSubset",
    "CrossValidationPlan",
    "finish_cv",
    "fold_indices",
    "split_fold",
    "plan_cv",
    "run_cv",
    "summarize_cv",
    "t_interval",
    "write_oof_predictions",
]

CONFIDENCE = CI_LEVEL
"""The coverage of the interval over folds in ``summary.json``."""

SUMMARY_FILE = "summary.json"
OOF_FILE = "oof_predictions.csv"
NO_GROUPS = "none"
"""``--group-by none``: folds ignore the data set's groups."""


# ------------------------------------------------------------------------------------- the folds


def fold_indices(
    labels: Sequence[int],
    *,
    folds: int,
    repeat: int = 0,
    seed: int = 0,
    groups: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
) -> list[tuple[list[int], list[int]]]:
    """The ``folds`` (training indices, held-out indices) pairs of repetition ``repeat``, each
    sorted, into ``labels`` (class indices of a data set's training split).

    Stratified (each held-out fold keeps the class proportions): scikit-learn's
    ``StratifiedKFold(folds, shuffle=True)``, or ``StratifiedGroupKFold`` with ``groups`` (one id
    per image: no group is split). Repetition ``r`` uses the ``r``-th draw from
    ``numpy.random.RandomState(seed)``, so without groups it equals repetition ``r`` of
    ``RepeatedStratifiedKFold(n_splits=folds, random_state=seed)``. ``classes`` (the data set's
    class names, by index) name a class in errors.

    Raises:
        SynergicError: fewer than 2 folds; a class with fewer images than folds (a held-out fold
            would miss it, and its AUC would be undefined); fewer groups than folds; a grouped
            split whose held-out fold misses a class.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    labels = np.asarray([int(label) for label in labels])

    def name(k: int) -> str:
        return f"class {k} ({classes[k]})" if classes is not None and k < len(classes) else \
            f"class {k}"

    if folds < 2:
        raise SynergicError(f"--folds must be at least 2, got {folds}")
    counts = np.bincount(labels)
    small = [(k, int(n)) for k, n in enumerate(counts) if 0 < n < folds]
    if small:
        k, n = small[0]
        raise SynergicError(
            f"{name(k)} has {n} training image{'s' if n != 1 else ''}, fewer than the {folds} "
            f"folds, so some held-out fold would have none: use --folds {max(2, n)} or fewer"
        )
    if groups is not None and len(set(groups)) < folds:
        raise SynergicError(
            f"the images form {len(set(groups))} groups, fewer than the {folds} folds: use "
            f"fewer --folds, or --group-by {NO_GROUPS}"
        )
    rng = np.random.RandomState(seed % 2**32)
    splitter_class = StratifiedGroupKFold if groups is not None else StratifiedKFold
    placeholder = np.zeros(len(labels))
    for _ in range(repeat + 1):  # repetition r is the r-th draw from one stream, as sklearn's
        splitter = splitter_class(n_splits=folds, shuffle=True, random_state=rng)
        pairs = [
            (sorted(int(i) for i in train), sorted(int(i) for i in held_out))
            for train, held_out in splitter.split(placeholder, labels, groups)
        ]
    if groups is not None:
        for fold, (_, held_out) in enumerate(pairs):
            missing = sorted(set(range(len(counts))) - set(labels[held_out].tolist()))
            if missing:
                raise SynergicError(
                    f"grouped fold {fold} of repeat {repeat} holds no image of "
                    f"{name(missing[0])} (the groups are too few or too uneven): use fewer --folds"
                )
    return pairs


class FoldSubset(torch.utils.data.Subset):
    """The images ``indices`` of ``dataset`` (a data set with ``classes``, ``ids``, ``labels``),
    as a data set of its own: ``classes``, ``ids``, ``labels``, ``groups`` and ``paths`` (when
    ``dataset`` has them) are those of the selected images; ``primary_metric`` and
    ``task_classes`` those of ``dataset``. ``prepare_data`` decodes ``dataset``
    once for all its subsets."""

    def __init__(self, dataset: Any, indices: Sequence[int], *, name: str) -> None:
        super().__init__(dataset, list(indices))
        self.name = name
        self.classes = list(dataset.classes)
        self.ids = [dataset.ids[i] for i in self.indices]
        self.labels = [int(dataset.labels[i]) for i in self.indices]
        for attribute in ("primary_metric", "task_classes"):  # the data set's scoring
            if hasattr(dataset, attribute):
                setattr(self, attribute, getattr(dataset, attribute))
        groups = getattr(dataset, "groups", None)
        if isinstance(groups, Mapping):
            self.groups = {kind: [ids[i] for i in self.indices] for kind, ids in groups.items()}
        paths = getattr(dataset, "paths", None)
        if paths is not None:
            self.paths = [paths[i] for i in self.indices]

    def load_resized(self, index: int, preprocessing):
        """Image ``index`` of the subset as uint8 ``[3, S, S]`` (see
        :func:`synergic.data.cache.decode_one`)."""
        from synergic.data.cache import decode_one

        return decode_one(self.dataset, self.indices[index], preprocessing)

    def __repr__(self) -> str:
        return f"FoldSubset({self.name!r}, {len(self)} images)"


def split_fold(dataset: Any, config, *, name: str) -> tuple[FoldSubset, FoldSubset]:
    """``(training part, held-out part)`` of ``dataset`` (a training split) for the fold that
    ``config`` (a :class:`~synergic.recipe.schema.CrossValidationConfig`) names.

    Raises:
        SynergicError: see :func:`fold_indices`; ``config.group_by`` that the data set's
            ``groups`` do not have.
    """
    groups = None
    if config.group_by is not None:
        groups = _groups_of(dataset, name).get(config.group_by)
        if groups is None:
            kinds = list(_groups_of(dataset, name))
            if not kinds:
                raise SynergicError(
                    f"data.cross_validation.group_by: data set '{name}' has no groups: remove "
                    "the key (or give --group-by none)"
                )
            raise SynergicError(
                f"data.cross_validation.group_by: data set '{name}' has no group "
                f"'{config.group_by}'{did_you_mean(config.group_by, kinds)}; its groups: "
                f"{', '.join(kinds)}"
            )
    pairs = fold_indices(
        dataset.labels, folds=config.folds, repeat=config.repeat, seed=config.seed, groups=groups,
        classes=list(getattr(dataset, "classes", None) or []) or None,
    )
    train, held_out = pairs[config.fold]
    where = f"repeat {config.repeat} fold {config.fold}"
    return (
        FoldSubset(dataset, train, name=f"{name} ({where}: training)"),
        FoldSubset(dataset, held_out, name=f"{name} ({where}: held out)"),
    )


def _groups_of(dataset: Any, name: str) -> dict[str, list[str]]:
    from synergic.data.datasets.base import dataset_groups

    return dataset_groups(dataset, name=name)


# -------------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class FoldRun:
    """One run of a cross-validation: fold ``fold`` of repetition ``repeat`` held out."""

    repeat: int
    fold: int
    run_dir: Path
    recipe: Recipe = field(repr=False)
    cell: str | None = None
    """The sweep cell this cross-validation is (``synergic sweep --folds``); None in ``cv``."""

    @property
    def label(self) -> str:
        where = f"repeat {self.repeat} fold {self.fold}"
        return f"{self.cell} {where}" if self.cell is not None else where


@dataclass(frozen=True)
class CrossValidationPlan:
    """Every run of a cross-validation, in order (repetition, then fold), and how it was made."""

    runs: list[FoldRun]
    folds: int
    repeats: int
    group_by: str | None
    """The data set's group kind the folds keep together (None: not grouped)."""
    seed: int
    output: Path


def plan_cv(
    recipe: str | os.PathLike[str] | Recipe,
    *,
    folds: int,
    repeats: int = 1,
    group_by: str | None = None,
    overrides: Sequence[str] = (),
    output: str | os.PathLike[str],
) -> CrossValidationPlan:
    """Plan a cross-validation of ``recipe``: ``repeats`` times ``folds`` runs, run ``(r, f)``
    into ``output/repeat-r/fold-f``. The training split is opened (not decoded) and every fold
    is drawn here, so a mistake fails before anything runs.

    Args:
        recipe: a recipe file, a built-in recipe name, or a loaded :class:`Recipe`.
        folds: k, at least 2.
        repeats: how many different k-fold splits (each a new shuffle).
        group_by: the kind of group (a key of the data set's ``groups``) to keep in one fold;
            None: the data set's only kind when it has exactly one, else no grouping;
            ``"none"``: no grouping.
        overrides: ``--set KEY=VALUE`` applied to the recipe.
        output: the cross-validation folder.

    Raises:
        SynergicError: ``output`` holding another kind of experiment (a run, a sweep:
            :func:`synergic.folders.check_output_kind`), a recipe that is already one fold,
            ``--repeats`` below 1, a ``group_by`` the data set does not have (or none given
            where it has several), and what :func:`fold_indices` refuses.
    """
    from synergic.experiment import open_datasets
    from synergic.recipe import check_registry_names, load_recipe
    from synergic.rundir import KEEP_CHECKPOINTS_MANY_RUNS, with_keep_checkpoints_default

    from synergic.folders import check_output_kind

    if repeats < 1:
        raise SynergicError(f"--repeats must be at least 1, got {repeats}")
    if folds < 2:
        raise SynergicError(f"--folds must be at least 2, got {folds}")
    check_output_kind(output, "cv")  # a folder holds one experiment: never write into another
    if isinstance(recipe, Recipe):
        base, source = recipe, recipe.name
        if overrides:
            from synergic.recipe.loading import recipe_from_dict

            base = recipe_from_dict(recipe.model_dump(mode="json"), overrides, source=source)
    else:
        base, source = load_recipe(recipe, overrides), str(recipe)
    check_registry_names(base, source=source)
    if base.data.cross_validation.folds:
        raise SynergicError(
            f"{source} is already fold {base.data.cross_validation.fold} of a cross-validation "
            "(data.cross_validation): cross-validate the recipe it came from"
        )
    base = with_keep_checkpoints_default(base, KEEP_CHECKPOINTS_MANY_RUNS)

    def fold_recipe(repeat: int, fold: int, kind: str | None) -> Recipe:
        data = base.model_dump(mode="json")
        data["data"]["cross_validation"] = {
            "folds": folds, "fold": fold, "repeat": repeat, "seed": base.seed, "group_by": kind,
        }
        return Recipe.model_validate(data)

    # The first fold's data sets give the training split, its groups and its classes.
    train_part, _, _ = open_datasets(fold_recipe(0, 0, None))
    training_split = train_part.dataset
    kind = _resolve_group_by(group_by, _groups_of(training_split, base.data.dataset),
                             name=base.data.dataset)
    config = fold_recipe(0, 0, kind).data.cross_validation
    for repeat in range(repeats):  # every fold drawn now: one that cannot be made fails here
        split_fold(training_split, config.model_copy(update={"repeat": repeat}),
                   name=base.data.dataset)
    output = Path(output)
    runs = [
        FoldRun(repeat, fold, output / f"repeat-{repeat}" / f"fold-{fold}",
                fold_recipe(repeat, fold, kind))
        for repeat in range(repeats) for fold in range(folds)
    ]
    return CrossValidationPlan(runs, folds, repeats, kind, base.seed, output)


def _resolve_group_by(
    group_by: str | None, groups: Mapping[str, Any], *, name: str = "the data set"
) -> str | None:
    kinds = list(groups)
    if group_by == NO_GROUPS:
        return None
    if group_by is None:
        if len(kinds) > 1:
            raise SynergicError(
                f"the data set groups its images by {', '.join(kinds)}: choose one with "
                f"--group-by {kinds[0]} (or --group-by {NO_GROUPS})"
            )
        return kinds[0] if kinds else None
    if not kinds:
        raise SynergicError(
            f"--group-by {group_by}: {name} has no groups (no lesion or patient ids): drop "
            "--group-by"
        )
    if group_by not in groups:
        raise SynergicError(
            f"--group-by {group_by}: {name} has no such group{did_you_mean(group_by, kinds)}"
            f"; its groups: {', '.join(kinds)}, or {NO_GROUPS}"
        )
    return group_by


# --------------------------------------------------------------------------------------- running


def run_cv(
    recipe: str | os.PathLike[str] | Recipe,
    *,
    folds: int,
    repeats: int = 1,
    group_by: str | None = None,
    overrides: Sequence[str] = (),
    output: str | os.PathLike[str],
    executor: Any = None,
    on_event: Callable[[str, FoldRun, int, int], None] | None = None,
    callbacks: Callable[[FoldRun], Sequence[object]] | None = None,
    on_stage: Callable[[str], None] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Cross-validate ``recipe`` (see :func:`plan_cv` for the arguments), then write
    ``summary.json`` and ``oof_predictions.csv`` into ``output`` and return the summary.

    Runs go one after another in this process, or, with ``executor`` (a submitit executor, e.g.
    ``submitit.AutoExecutor(folder, cluster="slurm")``), as one job each
    (:func:`synergic.sweep.execute_runs`). Either way a finished fold is kept and an interrupted
    one resumed when the same call is made again.

    Raises:
        synergic.sweep.SweepCellError: the first fold that fails or is stopped, naming it.
    """
    from synergic.sweep import execute_runs

    plan = plan_cv(recipe, folds=folds, repeats=repeats, group_by=group_by,
                   overrides=overrides, output=output)
    execute_runs(plan.runs, command="cv", where=lambda run: run.label, on_event=on_event,
                 callbacks=callbacks, on_stage=on_stage, progress=progress, executor=executor)
    description = {
        "recipe": str(recipe) if not isinstance(recipe, Recipe) else recipe.name,
        "overrides": list(overrides),
    }
    return finish_cv(plan, description=description)


def finish_cv(plan: CrossValidationPlan, *, description: Mapping[str, Any] | None = None
              ) -> dict[str, Any]:
    """Write ``oof_predictions.csv`` and ``summary.json`` of a cross-validation whose runs have
    all finished into ``plan.output``, and return the summary (:func:`summarize_cv`).

    Raises:
        SynergicError: a fold without ``metrics.json`` or ``predictions.csv`` (see
            :func:`summarize_cv`, :func:`write_oof_predictions`).
    """
    summary = summarize_cv(plan, description=description)
    write_oof_predictions(plan)
    _write_json(plan.output / SUMMARY_FILE, summary)
    return summary


# --------------------------------------------------------------------------------------- summary


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _read_metrics(run: FoldRun) -> dict[str, Any]:
    path = run.run_dir / "metrics.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SynergicError(
            f"{run.run_dir} has no metrics.json: {run.label} did not finish; run the same "
            f"{'sweep' if run.cell is not None else 'cv'} command again"
        ) from None
    except (OSError, ValueError) as error:
        raise SynergicError(f"{path} cannot be read ({error}): delete {run.run_dir} to redo "
                            f"{run.label}") from None


def summarize_cv(plan: CrossValidationPlan, *, description: Mapping[str, Any] | None = None
                 ) -> dict[str, Any]:
    """The summary of a finished cross-validation, read from its runs' ``metrics.json``.

    Per test (and validation) metric, over the ``folds x repeats`` runs: ``mean``, ``std`` (the
    sample standard deviation), ``n``, ``values`` (run order; null where undefined) and ``ci``,
    the 95 % t-interval of :func:`synergic.stats.t_interval` over the finite values, clipped to
    [0, 1] (null for fewer than two; optimistic over folds, see there):
    :func:`synergic.stats.mean_std_interval`. ``primary_metric``: the data set's ranking metric,
    as the runs record it.
    """
    from synergic.sweep.summary import primary_metric_of

    records = [(run, _read_metrics(run)) for run in plan.runs]
    tests = [metrics.get("test", {}) for _, metrics in records]
    validations = [metrics.get("validation") for _, metrics in records]
    names = list(dict.fromkeys(
        name for test in tests for name, value in test.items() if _is_number(value)
    ))
    summary: dict[str, Any] = {
        **(dict(description) if description else {}),
        "folds": plan.folds,
        "repeats": plan.repeats,
        "group_by": plan.group_by,
        "seed": plan.seed,
        "primary_metric": primary_metric_of([metrics for _, metrics in records],
                                            where="the folds", option=None),
        "interval": (
            f"{CONFIDENCE:.0%} Student's t interval over the {len(plan.runs)} fold results "
            "(scipy.stats.t): mean +- t(0.975, n - 1) * std / sqrt(n), clipped to [0, 1]. Folds "
            "share training images, so the interval is optimistic."
        ),
        "runs": [
            {"repeat": run.repeat, "fold": run.fold,
             "run_dir": run.run_dir.relative_to(plan.output).as_posix(),
             "test_images": sum((metrics.get("data") or {}).get("test", {}).values()) or None}
            for run, metrics in records
        ],
        "test": {name: mean_std_interval([test.get(name) for test in tests]) for name in names},
        "validation": None,
        "oof_predictions": OOF_FILE,
    }
    if all(v for v in validations):
        names = list(dict.fromkeys(
            k for v in validations for k, value in v.items() if k != "step" and _is_number(value)
        ))
        summary["validation"] = {
            name: mean_std_interval([v.get(name) for v in validations]) for name in names
        }
    return summary


def write_oof_predictions(plan: CrossValidationPlan) -> Path:
    """``oof_predictions.csv`` in the plan's folder: ``image,fold,repeat,<class probabilities>``,
    one row per training image and repetition (by repetition, then fold, then the data set's
    order), the probabilities copied as each fold run's ``predictions.csv`` wrote them. Written
    with the csv module; ids as :func:`synergic.data.names.printable_name` gives them.

    Raises:
        SynergicError: a fold's predictions.csv is missing or has other classes, or an image is
            held out twice in one repetition.
    """
    from synergic.data.names import printable_name
    from synergic.rundir import write_text_atomically

    header: list[str] | None = None
    rows: list[list[str]] = []
    seen: dict[tuple[int, str], int] = {}
    for run in plan.runs:
        path = run.run_dir / "predictions.csv"
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle)
                columns = next(reader)
                records = [row for row in reader if row]
        except (OSError, StopIteration) as error:
            raise SynergicError(f"{path} cannot be read ({error}): delete {run.run_dir} to "
                                f"redo {run.label}") from None
        classes = columns[1:]
        if header is None:
            header = ["image", "fold", "repeat", *classes]
        elif classes != header[3:]:
            raise SynergicError(f"{path} has the classes {classes}, the other folds "
                                f"{header[3:]}: delete {run.run_dir} to redo {run.label}")
        for record in records:
            image = printable_name(record[0])
            if (run.repeat, image) in seen:
                raise SynergicError(
                    f"image '{image}' is held out in folds {seen[run.repeat, image]} and "
                    f"{run.fold} of repeat {run.repeat}: {plan.output} mixes two "
                    "cross-validations; use another --output"
                )
            seen[run.repeat, image] = run.fold
            rows.append([image, str(run.fold), str(run.repeat), *record[1:]])
    text = io.StringIO(newline="")
    from synergic.data.names import CsvWriter

    writer = CsvWriter(text)
    writer.writerow(header or ["image", "fold", "repeat"])
    writer.writerows(rows)
    path = plan.output / OOF_FILE
    write_text_atomically(path, text.getvalue())
    return path


def _write_json(path: Path, value: Mapping[str, Any]) -> None:
    from synergic.rundir import json_safe, write_text_atomically
    from synergic.sweep.summary import printable_tree

    write_text_atomically(path, json.dumps(json_safe(printable_tree(dict(value))), indent=2) + "\n")
