"""From a recipe to a run directory: the one place where recipes meet components.

Data flows one way: :class:`~synergic.recipe.Recipe` -> data sets, decoded images and components
built from the registries -> :class:`~synergic.Trainer` -> the run directory::

    recipe.yaml        the resolved recipe
    log.csv            step, each loss term, learning rate, seconds per step
    checkpoints/       last.pt, best.pt (best by the data set's primary metric on validation,
                       AP unless the data set names another; when there is a validation split)
    metrics.json       {"test": {...}, "primary_metric": "ap", "test_components": [...], ...}
    predictions.csv    image,<class 0>,<class 1>,...: the aggregate probabilities per test image
    test_labels.csv    image,label: the test set's ground truth, in the same order
    roc.png, pr.png    aggregate and each component (binary tasks), as the paper's Fig. 3
    calibration.png    reliability diagram (binary tasks), see docs/metrics.md

Everything that can fail because of the user's input (recipe, data, weights) fails before the
run directory is touched; ``metrics.json`` and ``predictions.csv`` appear only at the very end.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synergic.errors import SynergicError, first_line
from synergic.recipe import Recipe

from synergic.rundir import (  # noqa: F401 - the run directory's format lives there
    RESULT_FILES,
    claim_run_directory,
    json_safe,
    run_directory_state,
    write_text_atomically,
)


@dataclass
class Split:
    """A decoded split: uint8 images ``[N, 3, S, S]`` (a tensor, memory-mapped for a large set,
    or an :class:`~synergic.data.cache.ImageRows` view of one), labels and ids."""

    images: Any
    labels: torch.Tensor
    ids: list[str]

    def subset(self, indices: Sequence[int]) -> Split:
        """The rows ``indices``: the images copied when held in memory, a view of a memory-mapped
        set (:func:`~synergic.data.cache.select_rows`), never a copy of the whole file."""
        from synergic.data.cache import select_rows

        index = torch.as_tensor(list(indices), dtype=torch.long)
        return Split(
            select_rows(self.images, index), self.labels[index], [self.ids[i] for i in indices]
        )


@dataclass
class PreparedData:
    classes: list[str]
    train: Split
    validation: Split | None
    test: Split | None
    """None only when opened without the test split (``open_datasets(test=False)``)."""
    primary_metric: str = "ap"
    """The data set's ranking metric (:func:`dataset_scoring`): selects the best checkpoint."""
    task_classes: tuple[str, ...] = ()
    """The classes the data set scores one-vs-rest (``task_auc``, ``auc_<class>``)."""

    def scorer(self):
        """:func:`synergic.metrics.compute_metrics` with this data's classes and task classes."""
        return metrics_scorer(self.classes, self.task_classes)


def dataset_scoring(
    train_set, name: str, *, primary_metric: str | None = None,
    task_classes: Sequence[str] | None = None,
) -> tuple[str, tuple[str, ...]]:
    """``(primary metric, task classes)`` of a data set's train split (or a cross-validation
    fold of it), as :func:`synergic.data.datasets.base.dataset_primary_metric` and
    :func:`~synergic.data.datasets.base.dataset_task_classes` check them; ``primary_metric`` and
    ``task_classes`` (the recipe keys ``data.primary_metric``, ``data.task_classes``; None: the
    data set's own) override the data set's attributes.

    Raises:
        SynergicError: an unknown metric name or task class, naming the data set ``name`` (and
            the recipe key, for an override), with the valid names and the closest.
    """
    from synergic.data.datasets.base import (
        PRIMARY_METRIC_ATTRIBUTE, dataset_primary_metric, dataset_task_classes,
    )
    from synergic.errors import did_you_mean
    from synergic.metrics import metric_names
    from synergic.metrics import primary_metric as checked_primary_metric

    if primary_metric is None and task_classes is None:
        return (dataset_primary_metric(train_set, name=name),
                dataset_task_classes(train_set, name=name))
    classes = [str(c) for c in train_set.classes]
    if task_classes is None:
        tasks = dataset_task_classes(train_set, name=name)
    else:
        for task in task_classes:
            if task not in classes:
                raise SynergicError(
                    f"data.task_classes names {task!r}, not a class of data set '{name}' "
                    f"({', '.join(classes)}){did_you_mean(task, classes)}: name its classes"
                )
        tasks = tuple(task_classes)
    if primary_metric is None:  # the data set's own, checked against the task classes given
        own = getattr(train_set, PRIMARY_METRIC_ATTRIBUTE, None)
        return checked_primary_metric(len(classes), own, task_classes=tasks, dataset=name), tasks
    names = metric_names(len(classes), tasks)
    if primary_metric not in names:
        scored = f", task classes {', '.join(tasks)}" if tasks else ""
        raise SynergicError(
            f"data.primary_metric {primary_metric!r} is not a metric synergic reports for data "
            f"set '{name}' ({len(classes)} classes{scored}){did_you_mean(primary_metric, names)}; "
            f"use one of {', '.join(names)}"
        )
    return primary_metric, tasks


def metrics_scorer(classes: Sequence[str], task_classes: Sequence[str] = ()):
    """The ``scorer`` of :class:`~synergic.Trainer` and
    :func:`synergic.training.evaluation.evaluate` for these classes: plain
    :func:`~synergic.metrics.compute_metrics` without task classes, else a partial of it."""
    import functools

    from synergic.metrics import compute_metrics

    if not task_classes:
        return compute_metrics
    return functools.partial(compute_metrics, classes=list(classes),
                             task_classes=tuple(task_classes))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _factory_call(recipe: Recipe, split: str, *, download: bool = True):
    from synergic import registry

    data = recipe.data
    entry = registry.datasets.entry(data.dataset)
    factory = entry.factory
    options = dict(data.options)
    if data.download:
        options["download"] = True
    _check_factory_options(factory, data.dataset, entry.origin, options)
    if not download:
        options.pop("download", None)
    try:
        return factory(root=data.root, split=split, **options)
    except TypeError as error:
        raise SynergicError(
            f"data set '{data.dataset}' does not accept these options ({error}): check data.options"
            + (" and data.download" if data.download else "")
        ) from None


def _check_factory_options(factory, name: str, origin: str, options: dict[str, Any]) -> None:
    """Bind ``root``, ``split`` and ``options`` against the signature of the data-set factory
    ``name``, so that a misspelt or missing option is a one-line error naming
    ``data.options.<key>`` (with a "did you mean") before anything is read. A factory whose
    signature cannot be read, or that takes ``**options``, checks its options itself.

    Raises:
        SynergicError: an option the factory does not take, a required option not given, or a
            factory that takes no ``root``/``split`` keyword (a plugin's mistake).
    """
    import inspect

    from synergic.errors import did_you_mean

    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    kinds = inspect.Parameter
    named = {
        key: p for key, p in parameters.items()
        if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
    }
    takes_any = any(p.kind is kinds.VAR_KEYWORD for p in parameters.values())
    where = f"data set '{name}'" + (f" (from {origin})" if origin != "synergic" else "")
    for framework_key in ("root", "split"):
        if framework_key in options:
            raise SynergicError(
                f"data.options.{framework_key}: synergic passes {framework_key} itself"
                + (": set data.root instead" if framework_key == "root" else
                   ": remove it (each split is opened in turn)")
            )
        if framework_key not in named and not takes_any:
            raise SynergicError(
                f"{where} cannot be called: its factory takes no '{framework_key}' keyword; a "
                "data-set factory must accept root= and split= (see the register_datasets hook)"
            )
    choices = [key for key in named if key not in ("root", "split", "download")]
    for key in options:
        if key not in named and not takes_any:
            if key == "download":
                raise SynergicError(
                    f"data.download: {where} cannot download its files: set data.download: "
                    "false and put the files in data.root"
                )
            raise SynergicError(
                f"data.options.{key}: {where} has no option '{key}'{did_you_mean(key, choices)}; "
                f"its options: {', '.join(choices) or '(none)'}"
            )
    for key, parameter in named.items():
        if parameter.default is kinds.empty and key not in ("root", "split") and key not in options:
            raise SynergicError(
                f"{where} needs data.options.{key}; its options: {', '.join(choices)}"
            )


def open_datasets(
    recipe: Recipe, *, download: bool = True, test: bool = True
) -> tuple[Any, Any | None, Any]:
    """The train, validation (None when absent) and test data sets of ``recipe``; with
    ``download=False``, ``data.download`` is not passed on (``synergic recipe check``); with
    ``test=False``, the data set's test split is not opened and None comes in its place
    (``synergic eval --split val``: a split it does not use, and its warnings, stay closed; a
    cross-validation fold's test set is a part of train and comes all the same).

    Raises:
        SynergicError: an option the data-set factory does not take (see
            :func:`_check_factory_options`), or what the factory and
            :func:`synergic.data.checks.check_dataset` refuse (missing files, bad labels).
    """
    from synergic.data import NoSuchSplit
    from synergic.data.checks import check_dataset

    name = recipe.data.dataset
    train = _factory_call(recipe, "train", download=download)
    check_dataset(train, split="train", name=name)
    try:
        validation = _factory_call(recipe, "val", download=download)
    except NoSuchSplit:
        validation = None
    if recipe.data.cross_validation.folds:
        # One fold of a cross-validation: its held-out part of the train split is the test set.
        from synergic.cv import split_fold

        train, test_set = split_fold(train, recipe.data.cross_validation, name=name)
    else:
        test_set = _factory_call(recipe, "test", download=download) if test else None
    for split, dataset in (("val", validation), ("test", test_set)):
        if dataset is not None:
            check_dataset(dataset, split=split, name=name, num_classes=len(train.classes))
            if list(dataset.classes) != list(train.classes):
                raise SynergicError(
                    f"data set '{name}': the {split} split's classes {list(dataset.classes)} differ "
                    f"from the train split's {list(train.classes)}"
                )
    return train, validation, test_set


def prepare_data(
    recipe: Recipe, *, progress: bool = False, datasets=None, preprocessing=None
) -> PreparedData:
    """Open the data sets (unless ``datasets`` holds them already), check them, and decode every
    image once (through the disk cache) with ``preprocessing`` (a run's stored
    :class:`~synergic.data.preprocess.Preprocessing`; default: ``data.image_size`` and
    ``data.resize`` of ``recipe``)."""
    from synergic.data.cache import cached_decode, default_cache_dir
    from synergic.data.preprocess import Preprocessing

    train_set, validation_set, test_set = datasets or open_datasets(recipe)
    data = recipe.data
    # Without the cache, a set too large for memory is decoded into a deleted file here.
    scratch_dir = Path(data.cache_dir).expanduser() if data.cache_dir else default_cache_dir()
    cache_dir = scratch_dir if data.cache else None
    if preprocessing is None:
        preprocessing = Preprocessing(image_size=data.image_size, resample=data.resize)

    decoded_whole: dict[int, Split] = {}

    def decode(dataset, label: str) -> Split:
        if isinstance(dataset, torch.utils.data.Subset):  # a fold: decode its data set once
            whole = id(dataset.dataset)
            if whole not in decoded_whole:
                decoded_whole[whole] = decode(dataset.dataset, label)
            return decoded_whole[whole].subset(dataset.indices)
        images = cached_decode(
            dataset, preprocessing=preprocessing, cache_dir=cache_dir, scratch_dir=scratch_dir,
            key_extra=data.dataset, num_workers=recipe.train.num_workers, progress=progress,
            description=f"decoding {label} images",
        )
        return Split(images, torch.as_tensor(list(dataset.labels), dtype=torch.long), list(dataset.ids))

    train = decode(train_set, "train")
    validation = decode(validation_set, "validation") if validation_set is not None else None
    carved = carve_validation(recipe, train_set, has_validation=validation_set is not None)
    if carved is not None:
        keep, held_out = carved
        train, validation = train.subset(keep), train.subset(held_out)
    test = decode(test_set, "test") if test_set is not None else None
    primary_metric, task_classes = dataset_scoring(
        train_set, data.dataset, primary_metric=data.primary_metric, task_classes=data.task_classes
    )
    return PreparedData(list(train_set.classes), train, validation, test,
                        primary_metric=primary_metric, task_classes=task_classes)


def carve_validation(
    recipe: Recipe, train_set, *, has_validation: bool
) -> tuple[list[int], list[int]] | None:
    """``(train indices, validation indices)`` into ``train_set`` when ``recipe`` carves a
    validation split from it (``data.validation_fraction > 0`` and the data set has none); else
    None. Needs only the labels (and group ids), so it runs before any image is decoded.

    Stratified by class (:func:`synergic.data.splits.stratified_split`); when the data set has
    groups and ``data.validation_group_by`` picks one (:func:`validation_group_kind`), by class
    and group, no group on both sides (:func:`synergic.data.splits.grouped_stratified_split`).

    Raises:
        SynergicError: a class has a single training image (grouped: images in a single group),
            so the validation split cannot hold it, or (grouped) no split found leaves a class
            that spans several groups on both sides (unless ``data.allow_incomplete_validation``,
            which warns instead); a ``data.validation_group_by`` the data set does not have.
    """
    import warnings

    from synergic.data.splits import (
        classes_missing_from_a_side, grouped_stratified_split, stratified_split,
        unrepresentable_classes,
    )

    fraction = recipe.data.validation_fraction
    if has_validation or fraction <= 0:
        return None
    labels = [int(label) for label in train_set.labels]
    kind = validation_group_kind(recipe, train_set)
    groups = None
    if kind is not None:
        from synergic.data.datasets.base import dataset_groups

        groups = dataset_groups(train_set, name=recipe.data.dataset)[kind]
    missing = [train_set.classes[label] for label in unrepresentable_classes(labels, groups)]
    if missing:
        plural = len(missing) > 1
        where = (f"{'have' if plural else 'has'} a single training image" if groups is None else
                 f"{'have' if plural else 'has'} training images in a single {kind} group")
        message = (
            f"data.validation_fraction={fraction}: class{'es' if plural else ''} "
            f"{', '.join(repr(m) for m in missing)} {where}, so the carved validation split "
            f"cannot hold {'them' if plural else 'it'} and validation AP/AUC would not cover "
            "every class"
        )
        if not recipe.data.allow_incomplete_validation:
            raise SynergicError(
                message + "; add images, set data.validation_fraction=0, "
                + ("" if groups is None else "set data.validation_group_by: none, ")
                + "or set data.allow_incomplete_validation=true"
            )
        warnings.warn(message, stacklevel=2)
    if groups is None:
        keep, held_out = stratified_split(labels, fraction, recipe.seed)
    else:
        keep, held_out = grouped_stratified_split(labels, groups, fraction, recipe.seed)
        no_val, no_train = classes_missing_from_a_side(labels, keep, held_out, groups)
        if held_out and (no_val or no_train):
            sides = "; ".join(
                f"from {side}: {', '.join(repr(train_set.classes[k]) for k in missing)}"
                for side, missing in (("validation", no_val), ("training", no_train)) if missing
            )
            message = (
                f"data.validation_fraction={fraction}: no split into whole {kind} groups that "
                f"synergic found puts every class on both sides, although each spans several "
                f"{kind} groups (missing {sides}), so validation AP/AUC would not cover every class"
            )
            if not recipe.data.allow_incomplete_validation:
                raise SynergicError(
                    message + "; add images, change data.validation_fraction or seed, set "
                    "data.validation_group_by: none, or set data.allow_incomplete_validation=true"
                )
            warnings.warn(message, stacklevel=2)
    return (keep, held_out) if held_out else None


VALIDATION_GROUP_PREFERENCE = ("patient", "lesion")
"""The kinds of group ``data.validation_group_by: auto`` keeps whole, first found first: a
patient's images together is the stricter split (one patient, several lesions)."""


def validation_group_kind(recipe: Recipe, train_set) -> str | None:
    """Which kind of the data set's groups (:data:`~synergic.data.datasets.base.GROUPS_ATTRIBUTE`)
    a carved validation split keeps whole, by ``data.validation_group_by``: ``auto`` takes the
    first of :data:`VALIDATION_GROUP_PREFERENCE` the data set has, else its first kind, else None
    (no groups); ``none`` gives None; any other value must be a kind the data set has.

    Raises:
        SynergicError: ``data.validation_group_by`` names a kind the data set does not have.
    """
    from synergic.data.datasets.base import dataset_groups
    from synergic.errors import did_you_mean

    wanted = recipe.data.validation_group_by
    if wanted == "none":
        return None
    kinds = list(dataset_groups(train_set, name=recipe.data.dataset))
    if wanted == "auto":
        preferred = [kind for kind in VALIDATION_GROUP_PREFERENCE if kind in kinds]
        return (preferred or kinds or [None])[0]
    if not kinds:
        raise SynergicError(
            f"data.validation_group_by: data set '{recipe.data.dataset}' has no groups (no "
            "lesion or patient ids): set it to auto or none"
        )
    if wanted not in kinds:
        raise SynergicError(
            f"data.validation_group_by: data set '{recipe.data.dataset}' has no group "
            f"'{wanted}'{did_you_mean(wanted, kinds)}; its groups: {', '.join(kinds)}"
            "; or use auto or none"
        )
    return wanted


def split_table(
    datasets, carved: tuple[list[int], list[int]] | None
) -> dict[str, tuple[list[str], list[int]]]:
    """``{"train": (ids, labels), "val": ..., "test": ...}`` as the run will use them (a carved
    validation split taken out of train); ``val`` is absent when there is none."""
    from synergic.data.names import printable_name

    def names(dataset) -> list[str]:  # a plugin's ids may be file names that are not UTF-8
        return [printable_name(str(image_id)) for image_id in dataset.ids]

    train_set, validation_set, test_set = datasets
    ids, labels = names(train_set), [int(label) for label in train_set.labels]
    table: dict[str, tuple[list[str], list[int]]] = {}
    if carved is not None:
        keep, held_out = carved
        table["train"] = ([ids[i] for i in keep], [labels[i] for i in keep])
        table["val"] = ([ids[i] for i in held_out], [labels[i] for i in held_out])
    else:
        table["train"] = (ids, labels)
        if validation_set is not None:
            table["val"] = (names(validation_set), [int(x) for x in validation_set.labels])
    table["test"] = (names(test_set), [int(x) for x in test_set.labels])
    return table


def build_recipe_model(recipe: Recipe, num_classes: int, *, fetch_weights: bool = True):
    """The SDL^n model of ``recipe`` (seeded), checked against the recipe's image size.

    ``fetch_weights=False`` builds a backbone whose pretrained weights come from the network
    (``model.backbone.pretrained`` without ``weights``) with random weights instead; a local
    ``model.backbone.weights`` file is read either way."""
    from synergic.models.sdl import build_model

    m = recipe.model
    seed_everything(recipe.seed)
    model = build_model(
        m.backbone.name, num_classes=num_classes, components=m.components,
        pretrained=m.backbone.pretrained and (fetch_weights or m.backbone.weights is not None),
        weights=m.backbone.weights,
        weights_key=m.backbone.weights_key,
        backbone_options=m.backbone.options, hidden=m.head.hidden, init_range=m.head.init_range,
        activation=m.head.activation, synergic_head=m.synergic_head.name,
        synergic_head_options=m.synergic_head.options,
    )
    _check_image_size(model, recipe)
    return model


def build_preprocessing(recipe: Recipe, model):
    """The run's :class:`~synergic.data.preprocess.Preprocessing`: ``data.image_size`` and
    ``data.resize`` of ``recipe``, mean/std of ``model``'s backbone (its ``pretrained_cfg``, see
    :func:`~synergic.models.backbones.backbone_normalization`). Stored in every checkpoint and in
    ``preprocessing.json``: evaluation and ``predict`` read it from there."""
    from synergic.data.preprocess import Preprocessing
    from synergic.models.backbones import backbone_normalization

    mean, std = backbone_normalization(model.components[0].backbone)
    return Preprocessing(
        image_size=recipe.data.image_size, resample=recipe.data.resize, mean=mean, std=std
    )


def build_training(recipe: Recipe, data: PreparedData, model=None):
    """The model (unless given), loss, sampler, optimiser, schedule and aggregator that
    ``recipe`` names."""
    from synergic import registry
    from synergic.losses import SynergicLoss
    from synergic.models.backbones import backbone_normalization
    from synergic.training.schedules import make_schedule
    from synergic.training.trainer import default_optimizer

    m, t = recipe.model, recipe.train
    if model is None:
        model = build_recipe_model(recipe, len(data.classes))
    sampler = build_sampler(recipe, data.train.labels.tolist())
    optimizer = default_optimizer(
        model, lr=t.optimizer.lr, momentum=t.optimizer.momentum,
        weight_decay=t.optimizer.weight_decay, nesterov=t.optimizer.nesterov,
    )
    schedule = make_schedule(
        t.lr_schedule.name, gamma=t.lr_schedule.gamma, warmup=t.lr_schedule.warmup,
        total_steps=t.iterations,
    )
    loss = SynergicLoss(t.synergic_weight, gradient=t.synergic_gradient)
    aggregator = registry.aggregators.get(m.aggregator)
    mean, std = backbone_normalization(model.components[0].backbone)
    return model, loss, sampler, optimizer, schedule, aggregator, (mean, std)


def build_sampler(recipe: Recipe, labels: Sequence[int]):
    """The pair sampler ``train.sampler`` names, over the training ``labels``.

    Raises:
        SynergicError: ``train.sampler.options`` that the sampler refuses (one line).
    """
    from synergic import registry

    m, t = recipe.model, recipe.train
    sampler_cls = registry.pair_samplers.get(t.sampler.name)
    try:
        return sampler_cls(
            list(labels), num_streams=m.components, batch_size=t.batch_size,
            seed=recipe.seed, **t.sampler.options,
        )
    except (TypeError, ValueError) as error:
        raise SynergicError(f"train.sampler: {error}") from None


def _check_image_size(model, recipe: Recipe) -> None:
    size = recipe.data.image_size
    component = model.components[0]
    was_training = component.training
    component.eval()
    try:
        with torch.no_grad():
            component(torch.zeros(1, 3, size, size))
    except (RuntimeError, AssertionError, ValueError) as error:
        # RuntimeError: a kernel larger than the feature map; AssertionError/ValueError: e.g. a
        # vision transformer whose patch size does not divide the image.
        first = first_line(error, 160)
        problem = "is too small for" if isinstance(error, RuntimeError) else "does not suit"
        raise SynergicError(
            f"data.image_size {size} {problem} backbone '{recipe.model.backbone.name}' "
            f"({first}): use a larger data.image_size, or one the backbone accepts"
        ) from None
    finally:
        component.train(was_training)


# -- the run directory ------------------------------------------------------------------------


def write_results(run_dir: Path, classes: list[str], test_ids: list[str], evaluation, extra: dict) -> None:
    """metrics.json, predictions.csv and the ROC/PR plots of the test evaluation.

    The CSV files are written by the ``csv`` module (fields holding a comma, a quote or a line
    break are quoted), in UTF-8, with image ids and class names as
    :func:`synergic.data.names.printable_name` gives them, so any file name can be written.
    """
    import io

    from synergic.data.names import CsvWriter, printable_name

    def csv_text(rows) -> str:
        text = io.StringIO()
        CsvWriter(text).writerows(rows)
        return text.getvalue()

    names = [printable_name(c) for c in classes]
    ids = [printable_name(i) for i in test_ids]
    probabilities = evaluation.probabilities.double().tolist()
    write_text_atomically(run_dir / "predictions.csv", csv_text(
        [["image", *names], *([image_id, *map(float, row)] for image_id, row
                              in zip(ids, probabilities))]
    ))
    # The ground truth beside the predictions, so reports can draw curves without the data set.
    write_text_atomically(run_dir / "test_labels.csv", csv_text(
        [["image", "label"], *([image_id, names[label]] for image_id, label
                               in zip(ids, evaluation.labels.tolist()))]
    ))
    _plot_test_curves(run_dir, names, evaluation)
    _plot_calibration(run_dir, evaluation, extra.get("prior_correction"))
    metrics = {
        "test": evaluation.metrics,
        "test_components": evaluation.component_metrics,
        **extra,
    }
    write_text_atomically(
        run_dir / "metrics.json", json.dumps(json_safe(metrics), indent=2, sort_keys=False) + "\n"
    )


def _plot_test_curves(run_dir: Path, classes: list[str], evaluation) -> None:
    """roc.png and pr.png: the aggregate's curves and each component's. Two classes: the positive
    class (index 1) on one plot; more: one panel per class, that class against the rest, leaving
    out (and naming) classes the test set lacks. Nothing is drawn without a curve to draw."""
    from synergic import plots

    labels = evaluation.labels.numpy()
    components = evaluation.component_probabilities
    probabilities = {"SDL (aggregate)" if len(components) > 1 else "model": evaluation.probabilities}
    if len(components) > 1:
        probabilities.update({f"component {k + 1}": p for k, p in enumerate(components)})
    if len(classes) == 2:
        if len(set(labels.tolist())) == 2:
            curves = {name: (p[:, 1].double().numpy(), labels) for name, p in probabilities.items()}
            plots.plot_roc(curves, run_dir / "roc.png", title="ROC, test set")
            plots.plot_pr(curves, run_dir / "pr.png", title="Precision-recall, test set")
    elif len(set(labels.tolist())) >= 2:
        curves = {name: (p.double().numpy(), labels) for name, p in probabilities.items()}
        plots.plot_roc_one_vs_rest(curves, classes, run_dir / "roc.png",
                                   title="ROC, test set, one class vs the rest")
        plots.plot_pr_one_vs_rest(curves, classes, run_dir / "pr.png",
                                  title="Precision-recall, test set, one class vs the rest")


def _plot_calibration(run_dir: Path, evaluation, prior_correction: dict | None) -> None:
    """calibration.png (two classes, both in the test set): the reliability diagram of the
    aggregate, each component and, with a prior correction, the corrected aggregate."""
    from synergic import plots
    from synergic.metrics import CALIBRATION_BINS, prior_corrected

    labels = evaluation.labels.numpy()
    if evaluation.probabilities.shape[1] != 2 or len(set(labels.tolist())) != 2:
        return
    components = evaluation.component_probabilities
    aggregate = evaluation.probabilities.double().numpy()
    name = "SDL (aggregate)" if len(components) > 1 else "model"
    curves = {name: (aggregate[:, 1], labels)}
    if len(components) > 1:
        curves.update({f"component {k + 1}": (p[:, 1].double().numpy(), labels)
                       for k, p in enumerate(components)})
    if prior_correction:
        corrected = prior_corrected(
            aggregate, prior_correction["training_prior"], prior_correction["data_prior"]
        )
        curves[f"{name}, prior-corrected"] = (corrected[:, 1], labels)
    plots.plot_reliability(curves, run_dir / "calibration.png", n_bins=CALIBRATION_BINS,
                           title="Reliability diagram, test set")


def sampler_class_mix(sampler, labels: torch.Tensor, steps: int) -> np.ndarray:
    """``[num_streams, K]``: the fraction of each class among the images ``sampler`` gave each
    stream (component) over ``steps`` 0..steps-1, the class mix that component trained on."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    num_classes = int(labels.max()) + 1
    counts = np.zeros((sampler.num_streams, num_classes))
    for step in range(steps):
        drawn = labels[sampler.sample(step)]  # [num_streams, batch_size]
        for stream, row in enumerate(drawn):
            counts[stream] += torch.bincount(row, minlength=num_classes).numpy()
    return counts / counts.sum(axis=1, keepdims=True)


def threshold_and_calibration_entries(
    trainer, data: PreparedData, evaluation, *, sampler_steps: int = 1000
) -> dict[str, Any]:
    """metrics.json's ``threshold``, ``calibration`` and ``prior_correction`` for two classes
    (:func:`synergic.metrics.threshold_and_calibration`); ``{}`` for more classes.

    Thresholds are chosen on the validation predictions of the model the trainer holds (the
    reported one, after :func:`evaluate_selected`). The prior correction moves the test
    probabilities from the class mix the sampler drew for the components over the run's first
    ``min(steps trained, sampler_steps)`` steps (:func:`sampler_class_mix`, averaged over the
    components) to the mix of the training labels. Every rank must call it (it evaluates the
    validation split).
    """
    from synergic.metrics import threshold_and_calibration

    if len(data.classes) != 2:
        return {}
    validation = None
    if data.validation is not None:
        validation = trainer.evaluate(data.validation.images, data.validation.labels)
    train_labels = torch.as_tensor(data.train.labels, dtype=torch.long)
    data_prior = np.bincount(train_labels.numpy(), minlength=2) / len(train_labels)
    steps = min(trainer.state.step, sampler_steps)
    mix = sampler_class_mix(trainer.sampler, train_labels, steps) if steps else None
    usable = mix is not None and mix.shape[1] == 2 and (mix > 0).all() and (data_prior > 0).all()
    validation_probabilities = validation_labels = None
    if validation is not None:
        validation_probabilities = validation.probabilities.double().numpy()
        validation_labels = validation.labels.numpy()
    entries = threshold_and_calibration(
        evaluation.probabilities.double().numpy(), evaluation.labels.numpy(),
        validation_probabilities=validation_probabilities, validation_labels=validation_labels,
        training_prior=mix.mean(axis=0) if usable else None,
        data_prior=data_prior if usable else None,
    )
    if usable:
        entries["prior_correction"]["component_training_prior"] = mix.tolist()
        entries["prior_correction"]["sampler_steps"] = steps
    return entries


def resumable_checkpoint(run_dir: Path, recipe: Recipe) -> dict[str, Any] | None:
    """The checkpoint to continue ``run_dir`` from with ``recipe``, checked; None for a run that
    was stopped before its first checkpoint (it starts again from step 0).

    Refused, each with a one-line :class:`SynergicError`: a folder holding no run; a recipe that
    differs from the run's in a result-affecting key (:func:`synergic.rundir.check_resume` names
    them; the checkpoint's own recipe is the reference); a checkpoint that is corrupt or of
    another synergic major.minor version; a run already past ``train.iterations``.
    """
    from synergic.recipe.loading import load_recipe
    from synergic.rundir import check_last_checkpoint_kept, check_resume
    from synergic.training.checkpoint import check_resumable_version, load_checkpoint

    state_of_dir = run_directory_state(run_dir)
    if state_of_dir == "other":  # a sweep or cross-validation is named, not "no synergic run"
        claim_run_directory(run_dir, resume=True, overwrite=False)
    if state_of_dir != "run":
        what = "does not exist" if not run_dir.exists() else (
            "is empty" if state_of_dir == "empty" else "holds no synergic run"
        )
        raise SynergicError(
            f"nothing to resume: {run_dir} {what}; drop --resume to start a new run there"
        )
    saved_path = run_dir / "recipe.yaml"
    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        check_last_checkpoint_kept(run_dir)  # else a finished run would start again from step 0
        if saved_path.is_file():
            check_resume(load_recipe(saved_path), recipe, run_dir=run_dir, step=0)
            return None
        raise SynergicError(
            f"nothing to resume in {run_dir}: no checkpoints/last.pt and no recipe.yaml; "
            "start it again with --overwrite instead of --resume"
        )
    state = load_checkpoint(last)
    check_resumable_version(state, last)
    metadata = state.get("metadata") or {}
    try:
        saved = Recipe.model_validate(metadata["recipe"])
    except Exception:  # noqa: BLE001 - any damage means the same thing to the user
        raise SynergicError(
            f"cannot resume {run_dir}: {last} does not record the recipe that wrote it; "
            "start a new run with --output"
        ) from None
    from synergic.rundir import identity_differences

    changed = identity_differences(saved, recipe, also_ignore=("train.iterations",))
    if changed and saved_path.is_file():
        if not identity_differences(load_recipe(saved_path), recipe, also_ignore=("train.iterations",)):
            # recipe.yaml is this recipe, the checkpoint is not: a file copied from another run.
            raise SynergicError(
                f"cannot resume {run_dir}: {last} was written by a run of another recipe "
                f"({', '.join(changed)}); resume it with its own recipe or start a new --output"
            )
    check_resume(saved, recipe, run_dir=run_dir, step=int(state.get("step", 0)))
    return state


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    evaluation: Any


def run(
    recipe: Recipe,
    run_dir: str | os.PathLike[str] | None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    callbacks: Sequence[object] = (),
    on_stage: Callable[[str], None] | None = None,
    on_info: Callable[[str], None] | None = None,
    check_only: bool = False,
    download: bool = True,
) -> RunResult | None:
    """Train and evaluate ``recipe``, writing the run directory ``run_dir`` (see
    :mod:`synergic.rundir` for its files).

    ``on_stage(message)`` is called as each stage starts; ``on_info(line)`` with facts the user
    should see before training (the classes, the data record). ``check_only`` returns None after
    the checks of everything a user can get wrong, before any image is decoded (``synergic run
    --devices N`` runs them once before starting its processes, and ``synergic recipe check``
    runs them with ``run_dir=None``, which skips the run directory's checks, and
    ``download=False``): the data-set options bound against the factory's signature, the files
    the data set lists (opened, not decoded), the validation split, ``train.select``, the model
    (weights files read and fitted, image size), the sampler. ``download=False`` passes no
    ``data.download`` to the data set and builds a backbone whose ImageNet weights would be
    downloaded with random weights instead, so nothing is fetched.
    """
    import warnings

    from synergic import __version__
    from synergic.models.backbones import describe_backbone, resolved_backbone
    from synergic.recipe import recipe_to_yaml
    from synergic.rundir import (
        absolute_paths, data_record, describe_data, identity_hash, record_iterations,
        update_run_record, write_splits,
    )
    from synergic.training import distributed
    from synergic.training.trainer import Augmentation, Trainer, TrainingInterrupted

    stage = on_stage or (lambda message: None)
    inform = on_info or (lambda line: None)
    if run_dir is None and not (check_only and not resume):
        raise ValueError("run() needs a run_dir, except with check_only=True and resume=False")
    run_dir = Path(run_dir) if run_dir is not None else None
    # Stored absolute, so that `synergic eval RUN` works from any directory.
    recipe = absolute_paths(recipe)
    info = distributed.init_distributed(recipe.train.device)
    distributed.check_batch(recipe.train.batch_size, info)
    if not info.enabled:  # e.g. train.device=cuda without a GPU: say so before any decoding
        from synergic.training.trainer import resolve_device

        resolve_device(recipe.train.device)
    if not resume and info.is_main and run_dir is not None:
        # Only checked here: an overwritten run is deleted once every check below has passed.
        claim_run_directory(run_dir, resume=False, overwrite=overwrite, delete=False)
    distributed.barrier()
    checkpoint = resumable_checkpoint(run_dir, recipe) if resume else None

    # Everything a user can get wrong (data layout, labels, splits, weights, image size) is
    # checked before the slow part: decoding every image.
    stage("checking the data and building the model")
    datasets = open_datasets(recipe, download=download)
    classes = list(datasets[0].classes)
    primary_metric, task_classes = dataset_scoring(
        datasets[0], recipe.data.dataset, primary_metric=recipe.data.primary_metric,
        task_classes=recipe.data.task_classes,
    )
    if checkpoint is not None:
        # Selection continues on the metric the run started with (checkpoints written before
        # data sets named theirs selected on AP), so best.pt's value stays comparable.
        primary_metric = (checkpoint.get("metadata") or {}).get("primary_metric", "ap")
    carved = carve_validation(recipe, datasets[0], has_validation=datasets[1] is not None)
    splits = split_table(datasets, carved)
    if recipe.train.select == "best" and "val" not in splits:
        raise SynergicError(
            "train.select is 'best' but the run has no validation split to select on: set "
            "data.validation_fraction > 0 (or give the data set a validation split), or "
            "train.select: last"
        )
    record = data_record(classes, splits)
    grouped_by = validation_group_kind(recipe, datasets[0]) if carved is not None else None
    if grouped_by is not None:  # metrics.json says which groups the validation split kept whole
        record["validation_group_by"] = grouped_by
    if checkpoint is not None:
        saved_fingerprint = (checkpoint.get("metadata") or {}).get("data_fingerprint")
        if saved_fingerprint and saved_fingerprint != record["fingerprint"]:
            raise SynergicError(
                f"cannot resume {run_dir}: the data differ from the run's (fingerprint "
                f"{record['fingerprint'][:12]}, the run used {saved_fingerprint[:12]}; compare "
                f"{run_dir / 'splits.csv'}): point data.root at the run's data"
            )
    inform(f"classes: {', '.join(f'{k}={name}' for k, name in enumerate(classes))}")
    inform(f"data: {describe_data(record)}")
    model = build_recipe_model(recipe, len(classes), fetch_weights=download)
    build_sampler(recipe, splits["train"][1])  # its options, before any image is decoded
    from synergic import registry

    registry.aggregators.get(recipe.model.aggregator)  # a plugin's reference, imported now
    backbone = resolved_backbone(  # the pretrained tag timm resolves the name to, for the record
        recipe.model.backbone.name, pretrained=recipe.model.backbone.pretrained,
        weights=recipe.model.backbone.weights, backbone=model.components[0].backbone,
    )
    inform(f"backbone: {describe_backbone(backbone)}")
    preprocessing = build_preprocessing(recipe, model)
    stored = (checkpoint.get("metadata") or {}).get("preprocessing") if checkpoint else None
    if stored is not None:
        # The checkpoint's record wins: a timm upgrade that changed the backbone's default
        # mean/std must not change the inputs halfway through a run.
        from synergic.data.preprocess import Preprocessing

        preprocessing = Preprocessing.from_dict(stored, source=f"{run_dir}/checkpoints/last.pt")
    from synergic.loggers import LoggerCollection, flat_params, open_loggers, result_metrics

    # A logger that cannot start (a missing package, an unreachable server) fails here, before
    # any image is decoded; only rank 0 logs.
    loggers = open_loggers(
        recipe.loggers, run_dir=run_dir, experiment=recipe.name, resume=resume,
        start_step=int(checkpoint["step"]) if checkpoint is not None else 0,
    ) if info.is_main else LoggerCollection()
    if check_only:
        return None
    if not resume and info.is_main:
        claim_run_directory(run_dir, resume=False, overwrite=overwrite)  # every check passed
    distributed.barrier()
    stage("preparing data")
    if not info.is_main:
        distributed.barrier()  # rank 0 decodes into the disk cache first, the others read it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # carve_validation's warning was given above
        data = prepare_data(
            recipe, progress=progress and info.is_main, datasets=datasets,
            preprocessing=preprocessing,
        )
    if info.is_main:
        distributed.barrier()
    from synergic.rundir import pixel_fingerprints

    # The fingerprint above names the images; this one is of what the model sees of them.
    record["pixels"] = pixel_fingerprints(
        {"train": data.train.images, "validation": data.validation.images if data.validation
         else None, "test": data.test.images}
    )
    saved_pixels = (checkpoint.get("metadata") or {}).get("data_pixels") if checkpoint else None
    if saved_pixels and saved_pixels != record["pixels"]:
        changed = [split for split in record["pixels"] if saved_pixels.get(split)
                   != record["pixels"][split]]
        raise SynergicError(
            f"cannot resume {run_dir}: the {', '.join(changed)} images have the same names and "
            "labels as the run's but other pixels (another copy of the data, or images edited "
            "since): point data.root at the run's data"
        )
    model, loss, sampler, optimizer, schedule, aggregator, (mean, std) = build_training(
        recipe, data, model
    )

    t = recipe.train
    augment = recipe.data.augment
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in RESULT_FILES:  # a resumed or extended run must not show stale results
            (run_dir / name).unlink(missing_ok=True)
        if resume and checkpoint is None:  # killed before its first checkpoint: start again
            (run_dir / "log.csv").unlink(missing_ok=True)
        write_text_atomically(run_dir / "recipe.yaml", recipe_to_yaml(recipe))
        write_text_atomically(
            run_dir / "preprocessing.json", json.dumps(preprocessing.to_dict(), indent=2) + "\n"
        )
        write_splits(run_dir, classes, splits)
        update_run_record(
            run_dir, synergic_version=__version__, identity=identity_hash(recipe),
            data_fingerprint=record["fingerprint"],
        )
        saved_total = None
        if checkpoint is not None:
            saved_total = Recipe.model_validate(checkpoint["metadata"]["recipe"]).train.iterations
        record_iterations(
            run_dir, step=int(checkpoint["step"]) if checkpoint is not None else 0,
            old_total=saved_total, new_total=t.iterations,
        )
    trainer = Trainer(
        model, loss, sampler, data.train.images, data.train.labels,
        mean=preprocessing.mean, std=preprocessing.std, iterations=t.iterations,
        optimizer=optimizer, lr_schedule=schedule,
        augmentation=Augmentation(augment.rotation, augment.hflip, augment.vflip, augment.fill),
        seed=recipe.seed, device=distributed.device_for(t.device, info), precision=t.precision,
        compile=t.compile, fuse_components=t.fuse_components,
        channels_last=t.channels_last, grad_clip=t.grad_clip, sync_batchnorm=t.sync_batchnorm,
        validation=(data.validation.images, data.validation.labels) if data.validation else None,
        aggregator=aggregator, selection_metric=primary_metric,
        scorer=metrics_scorer(classes, task_classes),
        eval_every=t.eval_every, eval_batch_size=t.eval_batch_size,
        checkpoint_every=t.checkpoint_every, checkpoint_dir=run_dir / "checkpoints",
        log_every=t.log_every, log_path=run_dir / "log.csv", callbacks=[*callbacks, loggers],
        tta=t.tta, ema=t.ema.timm_options() if t.ema.enabled else None, report_ema=t.ema.report,
        metadata={
            "recipe_hash": identity_hash(recipe), "classes": data.classes,
            "primary_metric": primary_metric, "task_classes": list(task_classes),
            "recipe": recipe.model_dump(mode="json"), "data_fingerprint": record["fingerprint"],
            "data_pixels": record["pixels"],
            "preprocessing": preprocessing.to_dict(),
            "backbone": backbone,
        },
    )
    if checkpoint is not None:
        trainer.resume(checkpoint)
        stage(f"resuming from step {trainer.state.step} of {t.iterations}")
    elif resume:
        stage("no checkpoint yet: training from step 0")
    stage("training")
    # However the rest ends, the loggers are finalized: an MLflow run ends FINISHED, KILLED
    # (Ctrl-C, or SIGTERM, on which the trainer stops) or FAILED, never left RUNNING.
    with loggers.finalized(interruptions=(TrainingInterrupted, KeyboardInterrupt)):
        loggers.log_hyperparams(flat_params(recipe))  # starts the MLflow run (rank 0 only)
        trainer.fit()
        stage("evaluating on the test set")
        result = evaluate_and_write_results(
            trainer, recipe, data, run_dir, primary_metric=primary_metric,
            task_classes=task_classes, record=record, backbone=backbone, write=info.is_main,
        )
        loggers.log_metrics(result_metrics(result.metrics), trainer.state.step)
        loggers.log_artifacts(run_dir)
    return result


def evaluate_and_write_results(
    trainer, recipe: Recipe, data: PreparedData, run_dir: Path, *, primary_metric: str,
    task_classes: Sequence[str], record: dict[str, Any], backbone: dict[str, Any],
    write: bool = True,
) -> RunResult:
    """After ``trainer.fit()``: evaluate the model ``recipe`` reports on the test split
    (:func:`evaluate_selected`), and, when ``write`` (rank 0), write ``metrics.json`` (with the
    thresholds, calibration and bootstrap intervals), ``predictions.csv`` and the run record,
    then prune the checkpoints (``train.keep_checkpoints``). ``record``: the data record
    (:func:`synergic.rundir.data_record`); ``backbone``: what
    :func:`synergic.models.backbones.resolved_backbone` recorded."""
    from synergic.rundir import prune_checkpoints, update_run_record

    t = recipe.train
    state = trainer.state
    evaluation, extra = evaluate_selected(trainer, recipe, data, run_dir)
    extra["tta"] = t.tta  # what produced the test metrics and predictions.csv
    if trainer.ema is not None:
        extra["selected"]["weights"] = "ema" if trainer.report_ema else "trained"
    extra.update(threshold_and_calibration_entries(trainer, data, evaluation))
    scoring = {"primary_metric": primary_metric}
    if task_classes:
        scoring["task_classes"] = list(task_classes)
    extra = {"classes": data.classes, **scoring, "iterations": state.step, **extra,
             "data": record, "backbone": backbone}
    if not write:
        return RunResult(run_dir, {"test": evaluation.metrics}, evaluation)
    if t.n_bootstrap:  # test_ci, test_components_ci, ci: from the predictions (synergic.stats)
        from synergic.stats import metric_intervals

        extra = {**metric_intervals(
            evaluation.probabilities.double().numpy(), evaluation.labels.numpy(),
            component_probabilities=[p.double().numpy()
                                     for p in evaluation.component_probabilities],
            n_bootstrap=t.n_bootstrap, seed=recipe.seed, classes=data.classes,
            task_classes=task_classes,
        ), **extra}
    write_results(run_dir, data.classes, data.test.ids, evaluation, extra)
    update_run_record(run_dir, selected=extra["selected"])
    # Only now, with the results written: until here last.pt is what a crashed run resumes from.
    prune_checkpoints(run_dir, t.keep_checkpoints, extra["selected"]["checkpoint"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return RunResult(run_dir, metrics, evaluation)


def selected_checkpoint(recipe: Recipe, has_validation: bool) -> str:
    """``"best"`` or ``"last"``: the model ``recipe`` reports (``train.select``; ``auto`` means
    best when there is a validation split)."""
    select = recipe.train.select
    if select == "auto":
        return "best" if has_validation else "last"
    return select


def evaluate_selected(trainer, recipe: Recipe, data: PreparedData, run_dir: Path):
    """The test evaluation of the model ``recipe`` selects, and the metrics.json entries that say
    which: ``selected`` (checkpoint, step, metric, value), ``validation`` (at that step) and, when
    the selected model is not the last one, ``test_last``/``test_last_components``.

    Candidates for ``best``: the checkpoints of the ``train.eval_every`` validations (best.pt
    keeps the best of them) and, when the last step is off that cadence, the last weights with
    their own final validation. The earlier step wins a tie. With ``train.select: best`` but no
    defined validation AP ever (a validation split of one class), the last weights are reported
    with a warning.
    """
    import math
    import warnings

    from synergic.training import distributed
    from synergic.training.checkpoint import load_checkpoint

    state = trainer.state
    last = trainer.evaluate(data.test.images, data.test.labels)
    history = {entry["step"]: entry for entry in state.validation_history}
    extra: dict[str, Any] = {}
    want = selected_checkpoint(recipe, data.validation is not None)
    if want == "best" and data.validation is None:  # run() refuses this before training
        raise SynergicError("train.select is 'best' but the run has no validation split")
    metric = trainer.selection_metric
    final = history.get(state.step)
    final_value = final.get(metric) if final else None
    if want == "best":
        setting = "auto" if recipe.train.select == "auto" else "best"
        if final_value is not None and math.isfinite(final_value) and not trainer.on_cadence(
            state.step
        ) and (state.best_metric is None or final_value > state.best_metric):
            # The last step, validated off the eval_every cadence, beats every checkpoint of
            # best.pt: the selected model is the last weights (last.pt).
            extra["selected"] = {"checkpoint": "last", "step": state.step, "metric": metric,
                                 "value": final_value}
            extra["validation"] = final
            extra["best_validation_step"] = state.step
            return last, extra
        if state.best_step is None:
            warnings.warn(
                f"train.select is '{setting}' (the best validation {metric}) but validation "
                f"{metric} was never defined (a validation split holding one class?): reporting "
                "the last weights",
                stacklevel=2,
            )
            want = "last"
    if want == "last":
        extra["selected"] = {"checkpoint": "last", "step": state.step}
        if final is not None:
            extra["validation"] = final
        if state.best_step is not None:
            extra["best_validation_step"] = state.best_step
        return last, extra

    extra["selected"] = {
        "checkpoint": "best", "step": state.best_step, "metric": trainer.selection_metric,
        "value": state.best_metric,
    }
    extra["validation"] = history.get(state.best_step)
    extra["best_validation_step"] = state.best_step
    if state.best_step == state.step:
        return last, extra  # best.pt holds the last weights
    distributed.barrier()  # rank 0 wrote best.pt
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    trainer.reported_model.load_state_dict(best["model"])  # the EMA weights when reported
    selected = trainer.evaluate(data.test.images, data.test.labels)
    extra["test_last"] = last.metrics
    extra["test_last_components"] = last.component_metrics
    return selected, extra
