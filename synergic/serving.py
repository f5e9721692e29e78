"""Use a finished run: re-evaluate it, or classify new images with it.

Both read the run's preprocessing (image size, resize filter, JPEG decode scale, mean, std) from
the checkpoint they use, and take the same path from a file to a model input as training did
(:mod:`synergic.data.preprocess`), so ``synergic predict RUN <test images>`` gives the
probabilities of the run's ``predictions.csv``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from synergic.errors import SynergicError

if TYPE_CHECKING:
    from synergic.data.preprocess import Preprocessing
    from synergic.models.sdl import SynergicModel
    from synergic.recipe import Recipe

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class TrainedRun:
    """A run directory opened for use (:func:`open_run`)."""

    recipe: Recipe
    """The run's ``recipe.yaml``."""
    model: SynergicModel
    """The trained model, in eval mode, on the CPU."""
    classes: list[str]
    """Class names, in the order of the model's outputs."""
    preprocessing: Preprocessing
    """How the run turned files into inputs, as its checkpoint records it."""
    checkpoint: Path
    """The checkpoint file the weights came from."""


def open_run(
    run_dir: Path, checkpoint: str = "last", *, overrides: Sequence[str] = ()
) -> TrainedRun:
    """The recipe, trained model, classes and preprocessing of a run directory.

    ``checkpoint``: ``"last"`` or ``"best"`` (``checkpoints/<name>.pt``). ``overrides``:
    ``KEY=VALUE`` for result-neutral recipe keys (``data.root``, ``train.device``, see
    :func:`synergic.rundir.apply_neutral_overrides`). The preprocessing is the
    checkpoint's ``metadata["preprocessing"]``; never derived from the rebuilt model, whose
    backbone may report other defaults than the one trained (a plugin, another timm version).

    Raises:
        SynergicError: no run there, no such checkpoint (or one that ``train.keep_checkpoints``
            removed after the run: the message says which one exists), a checkpoint that does not
            fit the recipe, or a damaged preprocessing record (each one line naming the file).
    """
    from synergic.models.sdl import build_model
    from synergic.recipe import load_recipe
    from synergic.rundir import apply_neutral_overrides, checkpoint_not_kept
    from synergic.training.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file():
        raise SynergicError(f"{run_dir} holds no synergic run (no recipe.yaml)")
    recipe = apply_neutral_overrides(
        load_recipe(run_dir / "recipe.yaml"), overrides, source=str(run_dir / "recipe.yaml")
    )
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    if not path.is_file():
        not_kept = checkpoint_not_kept(run_dir, checkpoint)
        if not_kept:
            raise SynergicError(not_kept)
        raise SynergicError(f"{path} not found{_missing_checkpoint_hint(run_dir, checkpoint)}")
    state = load_checkpoint(path)
    metadata = state.get("metadata") or {}
    classes = list(metadata.get("classes") or [])
    if not classes:
        raise SynergicError(f"{path} does not record its classes: it was not written by `synergic run`")
    m = recipe.model
    # The checkpoint holds every weight: no pretrained weights are needed to rebuild the model.
    model = build_model(
        m.backbone.name, num_classes=len(classes), components=m.components, pretrained=False,
        weights=None, backbone_options=m.backbone.options, hidden=m.head.hidden,
        init_range=m.head.init_range, activation=m.head.activation,
        synergic_head=m.synergic_head.name, synergic_head_options=m.synergic_head.options,
    )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise SynergicError(
            f"{path} does not fit the model of {run_dir / 'recipe.yaml'}: "
            f"{str(error).strip().splitlines()[0]}"
        ) from None
    model.eval()
    preprocessing = _stored_preprocessing(metadata, path, recipe, model)
    return TrainedRun(recipe, model, classes, preprocessing, path)


def load_run(run_dir: Path, checkpoint: str = "last"):
    """``(recipe, model, classes)`` of a run directory: the first three of :func:`open_run`."""
    run = open_run(run_dir, checkpoint)
    return run.recipe, run.model, run.classes


def _stored_preprocessing(
    metadata: dict[str, Any], path: Path, recipe: Recipe, model: SynergicModel
) -> Preprocessing:
    from synergic.data.preprocess import Preprocessing

    stored = metadata.get("preprocessing")
    if stored is not None:
        return Preprocessing.from_dict(stored, source=f"{path} (metadata.preprocessing)")
    # Checkpoints written before the preprocessing was recorded: training then decoded JPEGs at
    # twice the image size and normalised with the backbone's defaults, which is what this gives.
    from synergic.models.backbones import backbone_normalization

    mean, std = backbone_normalization(model.components[0].backbone)
    warnings.warn(
        f"{path} does not record its preprocessing (written by an older synergic): using "
        f"data.image_size and data.resize of recipe.yaml and the backbone's default mean/std "
        f"{mean}/{std}",
        stacklevel=3,
    )
    return Preprocessing(
        image_size=recipe.data.image_size, resample=recipe.data.resize, mean=mean, std=std
    )


def evaluate_run(
    run_dir: Path, *, split: str = "test", checkpoint: str = "last", overrides: Sequence[str] = ()
) -> dict:
    """Metrics of a run's checkpoint on one split of its data set, decoded with the run's stored
    preprocessing: ``{"aggregate": {...}, "components": [{...}, ...]}``."""
    from synergic import registry
    from synergic.experiment import prepare_data
    from synergic.training.evaluation import evaluate
    from synergic.training.trainer import resolve_device

    run = open_run(run_dir, checkpoint, overrides=overrides)
    recipe = run.recipe
    try:
        data = prepare_data(recipe, progress=True, preprocessing=run.preprocessing)
    except SynergicError as error:
        if recipe.data.root is None or Path(recipe.data.root).exists():
            raise
        # The run's data are not where they were: the data set's own hint (often "download
        # it") misses that the user may simply have moved them.
        raise SynergicError(
            f"{error}; if the run's data moved, say where they are now: synergic eval "
            f"{run_dir} --set data.root=NEW_PLACE"
        ) from None
    chosen = {"test": data.test, "val": data.validation, "train": data.train}[split]
    if chosen is None:
        raise SynergicError(f"the run's data set has no {split} split")
    result = evaluate(
        run.model, chosen.images, chosen.labels, mean=run.preprocessing.mean,
        std=run.preprocessing.std, aggregator=registry.aggregators.get(recipe.model.aggregator),
        batch_size=recipe.train.eval_batch_size, device=resolve_device(recipe.train.device),
        precision=recipe.train.precision, channels_last=recipe.train.channels_last,
    )
    return {"aggregate": result.metrics, "components": result.component_metrics}


def _image_files(paths: list[Path]) -> list[Path]:
    # One listing rule for the whole framework (synergic.data.listing): sidecars such as
    # ._x.jpg are skipped in folders, and skipped with a warning when named; each file once.
    from synergic.data.listing import IMAGE_EXTENSIONS, ImageListingWarning, list_image_files

    files = list_image_files(paths)
    looked_for = ", ".join(IMAGE_EXTENSIONS)
    for path in paths:
        if path.is_dir() and not any(f.is_relative_to(path) for f in files):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ImageListingWarning)
                holds_images = bool(list_image_files(path))
            if not holds_images:  # (else its images were listed through another argument)
                raise SynergicError(f"{path} holds no images ({looked_for})")
    if not files:
        raise SynergicError(
            f"no images to classify in {', '.join(map(str, paths))}: every file named is one "
            "that synergic skips (see the warning above); name image files or folders"
        )
    return files


@torch.inference_mode()
def predict_images(
    run_dir: Path, paths: list[Path], *, checkpoint: str = "last", overrides: Sequence[str] = ()
):
    """``(classes, [(path, probabilities), ...])`` for image files or folders of images.

    Every file goes through the run's stored preprocessing (:meth:`Preprocessing.load
    <synergic.data.preprocess.Preprocessing.load>`, then its mean/std) and the model is run as the
    run's test evaluation ran it (device, precision, batch size), so a test image gets the
    probabilities of the run's ``predictions.csv``. ``probabilities`` are floats, one per class.
    """
    from synergic import registry
    from synergic.training.evaluation import predict
    from synergic.training.trainer import resolve_device

    run = open_run(run_dir, checkpoint, overrides=overrides)
    recipe, preprocessing = run.recipe, run.preprocessing
    files = _image_files([Path(p) for p in paths])
    images = torch.stack([preprocessing.load(f) for f in files])
    logits = predict(
        run.model, images, mean=preprocessing.mean, std=preprocessing.std,
        batch_size=recipe.train.eval_batch_size, device=resolve_device(recipe.train.device),
        precision=recipe.train.precision, channels_last=recipe.train.channels_last,
    )
    probabilities = registry.aggregators.get(recipe.model.aggregator)(logits)
    return run.classes, [(str(f), row) for f, row in zip(files, probabilities.tolist())]


def _missing_checkpoint_hint(run_dir: Path, checkpoint: str) -> str:
    """Why ``checkpoint``.pt is not there, as far as the run directory tells."""
    if checkpoint != "best":
        return ": the run stopped before its first checkpoint, or the file was removed"
    from synergic.rundir import read_splits

    try:
        has_validation = any(split == "val" for _, split, _ in read_splits(run_dir))
    except (OSError, IndexError):
        has_validation = None
    if has_validation is False:
        return (": best.pt is written only for runs with a validation split, and this run has "
                "none; use --checkpoint last")
    if has_validation:
        return (": no validation on the train.eval_every cadence had a defined AP (a validation "
                "split holding one class, or eval_every 0), so the run reports its last weights; "
                "use --checkpoint last")
    return ": use --checkpoint last"
