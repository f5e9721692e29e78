"""From a recipe to a run directory: the one place where recipes meet components.

Data flows one way: :class:`~synergic.recipe.Recipe` -> data sets, decoded images and components
built from the registries -> :class:`~synergic.Trainer` -> the run directory::

    recipe.yaml        the resolved recipe
    log.csv            step, each loss term, learning rate, seconds per step
    checkpoints/       last.pt, best.pt (best by validation AP, when there is a validation split)
    metrics.json       {"test": {...}, "test_components": [...], "validation": {...}}
    predictions.csv    image,<class 0>,<class 1>,...: the aggregate probabilities per test image
    test_labels.csv    image,label: the test set's ground truth, in the same order
    roc.png, pr.png    aggregate and each component (binary tasks), as the paper's Fig. 3

Everything that can fail because of the user's input (recipe, data, weights) fails before the
run directory is touched; ``metrics.json`` and ``predictions.csv`` appear only at the very end.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synergic.errors import SynergicError
from synergic.recipe import Recipe

RESULT_FILES = ("metrics.json", "predictions.csv", "test_labels.csv", "roc.png", "pr.png")


@dataclass
class Split:
    """A decoded split: uint8 images ``[N, 3, S, S]``, labels and ids."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: list[str]

    def subset(self, indices: Sequence[int]) -> Split:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return Split(self.images[index], self.labels[index], [self.ids[i] for i in indices])


@dataclass
class PreparedData:
    classes: list[str]
    train: Split
    validation: Split | None
    test: Split


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _factory_call(recipe: Recipe, split: str):
    from synergic import registry

    data = recipe.data
    factory = registry.datasets.get(data.dataset)
    options = dict(data.options)
    if data.download:
        options["download"] = True
    try:
        return factory(root=data.root, split=split, **options)
    except TypeError as error:
        raise SynergicError(
            f"data set '{data.dataset}' does not accept these options ({error}): check data.options"
            + (" and data.download" if data.download else "")
        ) from None


def open_datasets(recipe: Recipe) -> tuple[Any, Any | None, Any]:
    """The train, validation (None when absent) and test data sets of ``recipe``."""
    from synergic.data import NoSuchSplit
    from synergic.data.checks import check_dataset

    name = recipe.data.dataset
    train = _factory_call(recipe, "train")
    check_dataset(train, split="train", name=name)
    try:
        validation = _factory_call(recipe, "val")
    except NoSuchSplit:
        validation = None
    test = _factory_call(recipe, "test")
    for split, dataset in (("val", validation), ("test", test)):
        if dataset is not None:
            check_dataset(dataset, split=split, name=name, num_classes=len(train.classes))
            if list(dataset.classes) != list(train.classes):
                raise SynergicError(
                    f"data set '{name}': the {split} split's classes {list(dataset.classes)} differ "
                    f"from the train split's {list(train.classes)}"
                )
    return train, validation, test


def prepare_data(recipe: Recipe, *, progress: bool = False, datasets=None) -> PreparedData:
    """Open the data sets (unless ``datasets`` holds them already), check them, and decode every
    image once (through the disk cache)."""
    from synergic.data.cache import cached_decode, default_cache_dir
    from synergic.data.splits import stratified_split

    train_set, validation_set, test_set = datasets or open_datasets(recipe)
    data = recipe.data
    cache_dir = None
    if data.cache:
        cache_dir = Path(data.cache_dir).expanduser() if data.cache_dir else default_cache_dir()

    def decode(dataset, label: str) -> Split:
        images = cached_decode(
            dataset, image_size=data.image_size, resample=data.resize, cache_dir=cache_dir,
            key_extra=data.dataset, num_workers=recipe.train.num_workers, progress=progress,
            description=f"decoding {label} images",
        )
        return Split(images, torch.as_tensor(list(dataset.labels), dtype=torch.long), list(dataset.ids))

    train = decode(train_set, "train")
    validation = decode(validation_set, "validation") if validation_set is not None else None
    if validation is None and data.validation_fraction > 0:
        keep, held_out = stratified_split(train.labels.tolist(), data.validation_fraction, recipe.seed)
        if held_out:
            train, validation = train.subset(keep), train.subset(held_out)
    test = decode(test_set, "test")
    return PreparedData(list(train_set.classes), train, validation, test)


def build_recipe_model(recipe: Recipe, num_classes: int):
    """The SDL^n model of ``recipe`` (seeded), checked against the recipe's image size."""
    from synergic.models.sdl import build_model

    m = recipe.model
    seed_everything(recipe.seed)
    model = build_model(
        m.backbone.name, num_classes=num_classes, components=m.components,
        pretrained=m.backbone.pretrained, weights=m.backbone.weights,
        backbone_options=m.backbone.options, hidden=m.head.hidden, init_range=m.head.init_range,
        activation=m.head.activation, synergic_head=m.synergic_head.name,
        synergic_head_options=m.synergic_head.options,
    )
    _check_image_size(model, recipe)
    return model


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
    sampler_cls = registry.pair_samplers.get(t.sampler.name)
    try:
        sampler = sampler_cls(
            data.train.labels.tolist(), num_streams=m.components, batch_size=t.batch_size,
            seed=recipe.seed, **t.sampler.options,
        )
    except (TypeError, ValueError) as error:
        raise SynergicError(f"train.sampler: {error}") from None
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
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        problem = "is too small for" if isinstance(error, RuntimeError) else "does not suit"
        raise SynergicError(
            f"data.image_size {size} {problem} backbone '{recipe.model.backbone.name}' "
            f"({first}): use a larger data.image_size, or one the backbone accepts"
        ) from None
    finally:
        component.train(was_training)


# -- the run directory ------------------------------------------------------------------------


def run_directory_state(run_dir: Path) -> str:
    """``"empty"``, ``"run"`` (holds a synergic run) or ``"other"`` (holds something else)."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "empty"
    if (run_dir / "recipe.yaml").exists() or (run_dir / "checkpoints").exists():
        return "run"
    return "other"


def claim_run_directory(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    state = run_directory_state(run_dir)
    if state == "empty" or resume:
        return
    if not overwrite:
        what = "another run" if state == "run" else "other files"
        raise SynergicError(
            f"output directory {run_dir} already holds {what}: use --resume to continue it, "
            "--overwrite to replace it, or another --output"
        )
    if state == "other":
        raise SynergicError(
            f"output directory {run_dir} holds files that are not a synergic run: "
            "--overwrite only replaces runs; choose another --output"
        )
    shutil.rmtree(run_dir)


def json_safe(value: Any) -> Any:
    """NaN and infinities become null: metrics.json is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_text_atomically(path: Path, text: str) -> None:
    from synergic.training.checkpoint import atomic_write

    atomic_write(path, lambda handle: handle.write(text.encode()))


def write_results(run_dir: Path, classes: list[str], test_ids: list[str], evaluation, extra: dict) -> None:
    """metrics.json, predictions.csv and the ROC/PR plots of the test evaluation."""
    lines = ["image," + ",".join(classes)]
    for image_id, row in zip(test_ids, evaluation.probabilities.double().tolist()):
        lines.append(image_id + "," + ",".join(repr(float(p)) for p in row))
    write_text_atomically(run_dir / "predictions.csv", "\n".join(lines) + "\n")
    # The ground truth beside the predictions, so reports can draw curves without the data set.
    truth = ["image,label"] + [
        f"{image_id},{classes[label]}" for image_id, label in zip(test_ids, evaluation.labels.tolist())
    ]
    write_text_atomically(run_dir / "test_labels.csv", "\n".join(truth) + "\n")
    if len(classes) == 2:
        from synergic.plots import plot_pr, plot_roc

        labels = evaluation.labels.numpy()
        curves = {"SDL (aggregate)" if len(evaluation.component_probabilities) > 1 else "model":
                  (evaluation.probabilities[:, 1].double().numpy(), labels)}
        if len(evaluation.component_probabilities) > 1:
            for k, p in enumerate(evaluation.component_probabilities):
                curves[f"component {k + 1}"] = (p[:, 1].double().numpy(), labels)
        if len(set(labels.tolist())) == 2:
            plot_roc(curves, run_dir / "roc.png", title="ROC, test set")
            plot_pr(curves, run_dir / "pr.png", title="Precision-recall, test set")
    metrics = {
        "test": evaluation.metrics,
        "test_components": evaluation.component_metrics,
        **extra,
    }
    write_text_atomically(
        run_dir / "metrics.json", json.dumps(json_safe(metrics), indent=2, sort_keys=False) + "\n"
    )


def resumable_checkpoint(run_dir: Path, recipe: Recipe) -> dict[str, Any] | None:
    """The checkpoint to continue ``run_dir`` from with ``recipe``, checked; None for a run that
    was stopped before its first checkpoint (it starts again from step 0).

    Refused, each with a one-line :class:`SynergicError`: a folder holding no run; a recipe whose
    seed, data or model differ from the run's (the keys are named); a checkpoint that is corrupt,
    of another recipe or of another synergic major.minor version; a run already past
    ``train.iterations``. A changed ``train`` section is allowed: raising ``train.iterations``
    extends a finished run.
    """
    from synergic.recipe import (
        NOT_RUN_DEFINING_KEYS, RUN_DEFINING_KEYS, recipe_differences, recipe_hash,
    )
    from synergic.recipe.loading import load_recipe
    from synergic.training.checkpoint import check_resumable_version, load_checkpoint

    state_of_dir = run_directory_state(run_dir)
    if state_of_dir != "run":
        what = "does not exist" if not run_dir.exists() else (
            "is empty" if state_of_dir == "empty" else "holds no synergic run"
        )
        raise SynergicError(
            f"nothing to resume: {run_dir} {what}; drop --resume to start a new run there"
        )

    def differences(saved: Recipe) -> list[str]:
        return recipe_differences(saved, recipe, keys=RUN_DEFINING_KEYS, ignore=NOT_RUN_DEFINING_KEYS)

    saved_path = run_dir / "recipe.yaml"
    if saved_path.is_file():
        saved = load_recipe(saved_path)
        if recipe_hash(saved) != recipe_hash(recipe):
            raise SynergicError(
                f"cannot resume {run_dir}: the recipe differs from the run's {saved_path} in keys "
                f"that define the run: {', '.join(differences(saved))}; undo those changes or "
                "start a new --output"
            )
    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        if saved_path.is_file():
            return None
        raise SynergicError(
            f"nothing to resume in {run_dir}: no checkpoints/last.pt and no recipe.yaml; "
            "start it again with --overwrite instead of --resume"
        )
    state = load_checkpoint(last)
    check_resumable_version(state, last)
    metadata = state.get("metadata") or {}
    if metadata.get("recipe_hash") != recipe_hash(recipe):
        keys = ""
        if isinstance(metadata.get("recipe"), dict):
            try:
                keys = ": " + ", ".join(differences(Recipe.model_validate(metadata["recipe"])))
            except Exception:  # noqa: BLE001 - the hash already says enough
                keys = ""
        raise SynergicError(
            f"cannot resume {run_dir}: {last} was written by a run of another recipe (seed, "
            f"data or model differ{keys}); resume it with its own recipe or start a new --output"
        )
    step = int(state.get("step", 0))
    if step > recipe.train.iterations:
        raise SynergicError(
            f"cannot resume {run_dir}: it is already at step {step}, beyond "
            f"train.iterations={recipe.train.iterations}; set train.iterations to {step} or more"
        )
    return state


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    evaluation: Any


def run(
    recipe: Recipe,
    run_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    callbacks: Sequence[object] = (),
    on_stage: Callable[[str], None] | None = None,
) -> RunResult:
    """Train and evaluate ``recipe``, writing the run directory ``run_dir``."""
    from synergic.recipe import recipe_hash, recipe_to_yaml
    from synergic.training import distributed
    from synergic.training.trainer import Augmentation, Trainer

    stage = on_stage or (lambda message: None)
    run_dir = Path(run_dir)
    info = distributed.init_distributed(recipe.train.device)
    distributed.check_batch(recipe.train.batch_size, info)
    if not resume and info.is_main:
        claim_run_directory(run_dir, resume=False, overwrite=overwrite)
    distributed.barrier()
    checkpoint = resumable_checkpoint(run_dir, recipe) if resume else None

    # Everything a user can get wrong (data layout, labels, weights, image size) is checked
    # before the slow part: decoding every image.
    stage("checking the data and building the model")
    datasets = open_datasets(recipe)
    model = build_recipe_model(recipe, len(datasets[0].classes))
    stage("preparing data")
    if not info.is_main:
        distributed.barrier()  # rank 0 decodes into the disk cache first, the others read it
    data = prepare_data(recipe, progress=progress and info.is_main, datasets=datasets)
    if info.is_main:
        distributed.barrier()
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
    trainer = Trainer(
        model, loss, sampler, data.train.images, data.train.labels,
        mean=mean, std=std, iterations=t.iterations, optimizer=optimizer, lr_schedule=schedule,
        augmentation=Augmentation(augment.rotation, augment.hflip, augment.vflip),
        seed=recipe.seed, device=distributed.device_for(t.device, info), precision=t.precision,
        compile=t.compile,
        channels_last=t.channels_last, grad_clip=t.grad_clip, sync_batchnorm=t.sync_batchnorm,
        validation=(data.validation.images, data.validation.labels) if data.validation else None,
        aggregator=aggregator, eval_every=t.eval_every, eval_batch_size=t.eval_batch_size,
        checkpoint_every=t.checkpoint_every, checkpoint_dir=run_dir / "checkpoints",
        log_every=t.log_every, log_path=run_dir / "log.csv", callbacks=callbacks,
        metadata={
            "recipe_hash": recipe_hash(recipe), "classes": data.classes,
            "recipe": recipe.model_dump(mode="json"),
        },
    )
    if checkpoint is not None:
        trainer.resume(checkpoint)
        stage(f"resuming from step {trainer.state.step} of {t.iterations}")
    elif resume:
        stage("no checkpoint yet: training from step 0")
    stage("training")
    state = trainer.fit()

    stage("evaluating on the test set")
    evaluation = trainer.evaluate(data.test.images, data.test.labels)
    extra: dict[str, Any] = {"classes": data.classes, "iterations": state.step}
    if data.validation is not None and state.validation_history:
        extra["validation"] = state.validation_history[-1]
        extra["best_validation_step"] = state.best_step
    if not info.is_main:
        return RunResult(run_dir, {"test": evaluation.metrics}, evaluation)
    write_results(run_dir, data.classes, data.test.ids, evaluation, extra)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return RunResult(run_dir, metrics, evaluation)
