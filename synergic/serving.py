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
    weights: str = "trained"
    """``"ema"`` when the model holds the run's EMA of the weights (``train.ema`` with
    ``report``), else ``"trained"``."""


def open_run(
    run_dir: Path, checkpoint: str = "last", *, overrides: Sequence[str] = ()
) -> TrainedRun:
    """The recipe, trained model, classes and preprocessing of a run directory.

    ``checkpoint``: ``"last"`` or ``"best"`` (``checkpoints/<name>.pt``). ``overrides``:
    ``KEY=VALUE`` for result-neutral recipe keys (``data.root``, ``train.device``, see
    :func:`synergic.rundir.apply_neutral_overrides`). The preprocessing is the
    checkpoint's ``metadata["preprocessing"]``; never derived from the rebuilt model, whose
    backbone may report other defaults than the one trained (a plugin, another timm version).
    The weights are those the run reports (:func:`~synergic.training.checkpoint.reported_weights`):
    its EMA of the weights when ``train.ema`` reported them.

    Raises:
        SynergicError: no run there, no such checkpoint (or one that ``train.keep_checkpoints``
            removed after the run: the message says which one exists), a checkpoint that does not
            fit the recipe, or a damaged preprocessing record (each one line naming the file).
    """
    from synergic.models.sdl import build_model
    from synergic.recipe import load_recipe
    from synergic.rundir import apply_neutral_overrides, checkpoint_not_kept
    from synergic.training.checkpoint import load_checkpoint, reported_weights

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
        model.load_state_dict(reported_weights(state))
    except SynergicError as error:
        raise SynergicError(f"{path}: {error}") from None
    except RuntimeError as error:
        raise SynergicError(
            f"{path} does not fit the model of {run_dir / 'recipe.yaml'}: "
            f"{str(error).strip().splitlines()[0]}"
        ) from None
    model.eval()
    preprocessing = _stored_preprocessing(metadata, path, recipe, model)
    is_ema = state.get("model_is_ema") or state.get("reported_weights") == "model_ema"
    return TrainedRun(recipe, model, classes, preprocessing, path, "ema" if is_ema else "trained")


def run_tta(run_dir: Path) -> str:
    """The test-time augmentation a run evaluated with: ``train.tta`` of its ``recipe.yaml``
    (``none`` for runs from before TTA).

    Raises:
        SynergicError: no run there, or a recipe.yaml that does not load."""
    from synergic.recipe import load_recipe

    path = Path(run_dir) / "recipe.yaml"
    if not path.is_file():
        raise SynergicError(f"{run_dir} holds no synergic run (no recipe.yaml)")
    return load_recipe(path).train.tta


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
    run_dir: Path, *, split: str = "test", checkpoint: str = "last", overrides: Sequence[str] = (),
    tta: str | None = None,
) -> dict:
    """Metrics of a run's checkpoint on one split of its data set, decoded with the run's stored
    preprocessing: ``{"aggregate": {...}, "components": [{...}, ...], "tta": ..., "weights":
    ...}``.

    ``tta``: test-time augmentation (``none``, ``flips``, ``d4``, see :mod:`synergic.tta`);
    None: the run's own ``train.tta``, so the run's test metrics are reproduced. ``weights``:
    ``"ema"`` or ``"trained"`` (:attr:`TrainedRun.weights`). Nothing is written: the run's
    ``metrics.json`` stays the run's."""
    from synergic import registry
    from synergic.experiment import open_datasets, prepare_data
    from synergic.training.evaluation import evaluate
    from synergic.training.trainer import resolve_device

    run = open_run(run_dir, checkpoint, overrides=overrides)
    recipe = run.recipe
    tta = recipe.train.tta if tta is None else tta
    try:
        # Only the splits used: the test split's files (and notes about them) stay closed for
        # --split val or train.
        datasets = open_datasets(recipe, test=split == "test")
        data = prepare_data(recipe, progress=True, preprocessing=run.preprocessing,
                            datasets=datasets)
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
        precision=recipe.train.precision, channels_last=recipe.train.channels_last, tta=tta,
        scorer=data.scorer(),
    )
    return {"aggregate": result.metrics, "components": result.component_metrics, "tta": tta,
            "weights": run.weights}


def image_files(paths: Sequence[str | Path]) -> list[Path]:
    """The image files to classify in ``paths`` (files or folders), as ``synergic predict``,
    ``explain`` and ``export`` list them.

    One listing rule for the whole framework (:func:`synergic.data.listing.list_image_files`):
    sidecars such as ``._x.jpg`` are skipped in folders, and skipped with a warning when named;
    each file once. Also skipped, with one warning saying how many: the files the ISIC challenges
    ship beside their images (``ISIC_0000000_superpixels.png``, segmentation and attribute masks,
    ``*_metadata.csv``: :func:`synergic.data.listing.companion_reason`), so that a challenge's
    image folder gives one row per image.

    Raises:
        SynergicError: a path that does not exist, a folder with no images, or no image at all.
    """
    from synergic.data.listing import IMAGE_EXTENSIONS, ImageListingWarning, list_image_files

    paths = [Path(p) for p in paths]
    files = list_image_files(paths, skip_companions=True)
    looked_for = ", ".join(IMAGE_EXTENSIONS)
    for path in paths:
        if path.is_dir() and not any(f.is_relative_to(path) for f in files):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ImageListingWarning)
                holds_images = bool(list_image_files(path, skip_companions=True))
            if not holds_images:  # (else its images were listed through another argument)
                raise SynergicError(
                    f"{path} holds no images to classify ({looked_for}; the ISIC challenges' "
                    "superpixel maps and masks do not count)"
                )
    if not files:
        raise SynergicError(
            f"no images to classify in {', '.join(map(str, paths))}: every file named is one "
            "that synergic skips (see the warning above); name image files or folders"
        )
    return files


@torch.inference_mode()
def predict_images(
    run_dir: Path, paths: list[Path], *, checkpoint: str = "last", overrides: Sequence[str] = (),
    tta: str | None = None,
):
    """``(classes, [(path, probabilities), ...])`` for image files or folders of images.

    ``tta``: test-time augmentation (``none``, ``flips``, ``d4``, see :mod:`synergic.tta`);
    None: the run's own ``train.tta``, as its ``predictions.csv`` was made.

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
    files = image_files(paths)
    images = torch.stack([preprocessing.load(f) for f in files])
    logits = predict(
        run.model, images, mean=preprocessing.mean, std=preprocessing.std,
        batch_size=recipe.train.eval_batch_size, device=resolve_device(recipe.train.device),
        precision=recipe.train.precision, channels_last=recipe.train.channels_last,
        tta=recipe.train.tta if tta is None else tta,
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


# -- challenge submission files ----------------------------------------------------------------

#: The challenges whose submission CSV ``synergic predict --format`` writes
#: (:func:`submission_csv`).
SUBMISSION_FORMATS: tuple[str, ...] = ("isic2016", "isic2017", "isic2018", "isic2019", "isic2020")

#: ISIC 2017 Part 3's two binary tasks: the prediction columns after ``image_id``.
ISIC2017_TASKS: tuple[str, ...] = ("melanoma", "seborrheic_keratosis")
#: ISIC 2018 Task 3's diagnosis columns after ``image``, in the ground truth's order.
ISIC2018_COLUMNS: tuple[str, ...] = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
#: ISIC 2019's diagnosis columns after ``image``; ``UNK`` (none of the others) has no training
#: images, so an 8-class model's submission says 0.0 for it.
ISIC2019_COLUMNS: tuple[str, ...] = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")


def submission_csv(
    challenge: str, classes: Sequence[str], rows: Sequence[tuple[str, Sequence[float]]]
) -> str:
    """The submission CSV of an ISIC challenge for class probabilities of images.

    Args:
        challenge: one of :data:`SUBMISSION_FORMATS`.
        classes: the run's class names, in the order of each row's probabilities.
        rows: ``(image path or id, [K] probabilities)`` per image, as :func:`predict_images`
            gives them. The image id is the file name without its extension
            (``ISIC_0000003.jpg`` -> ``ISIC_0000003``), as the challenges list images.

    Returns:
        The CSV text (``\n`` line ends, probabilities as Python's shortest float repr):

        - ``isic2016``: ``ISIC_0000003,0.73`` rows, no header: the malignant probability of
          a ``benign``/``malignant`` model (ISIC 2016 Part 3).
        - ``isic2017``: ``image_id,melanoma,seborrheic_keratosis``: each task's class
          probability from a model whose classes include both (the 3-class
          nevus/melanoma/seborrheic_keratosis model); from a model of one binary task (classes
          ``other`` and ``melanoma``, or ``other`` and ``seborrheic_keratosis``) only that
          task's column, to be scored on that task alone.
        - ``isic2018``: ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` from a model of exactly those
          classes (in any order).
        - ``isic2019``: ``image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK`` from a model of the eight
          diagnoses (``UNK`` = 0.0) or of all nine.
        - ``isic2020``: ``image_name,target``: the malignant probability of a
          ``benign``/``malignant`` model.

    Raises:
        SynergicError: an unknown challenge, classes that do not fit its columns (one line
            naming the classes needed), or two rows of one image id (``ISIC_0000003.jpg`` and
            ``ISIC_0000003.png``: the challenges' scorers refuse a submission listing an image
            twice).
    """
    import io

    from synergic.data.names import CsvWriter, printable_name

    classes = [str(c) for c in classes]
    header, columns = _submission_columns(challenge, classes)
    text = io.StringIO()
    writer = CsvWriter(text)
    if header is not None:
        writer.writerow(header)
    first_path: dict[str, str] = {}
    for path, probabilities in rows:
        image_id = printable_name(Path(str(path)).stem)
        if image_id in first_path:
            raise SynergicError(
                f"--format {challenge}: {printable_name(str(path))} and {first_path[image_id]} "
                f"are both image {image_id}, and a submission lists each image once: classify "
                "one of them"
            )
        first_path[image_id] = printable_name(str(path))
        writer.writerow([image_id, *(
            "0.0" if k is None else repr(float(probabilities[k])) for k in columns
        )])
    return text.getvalue()


def _submission_columns(challenge: str, classes: list[str]) -> tuple[list[str] | None, list]:
    """The header (None: none) and, per value column, the class index it takes (None: 0.0)."""
    from synergic.errors import did_you_mean

    def refuse(needed: str) -> SynergicError:
        return SynergicError(
            f"--format {challenge}: the run's classes ({', '.join(classes)}) do not fit the "
            f"challenge's submission; it needs {needed}"
        )

    def binary_positive() -> int:
        if len(classes) != 2 or "malignant" not in classes:
            raise refuse("a model of two classes, one of them 'malignant' (e.g. benign, malignant)")
        return classes.index("malignant")

    if challenge == "isic2016":
        return None, [binary_positive()]
    if challenge == "isic2020":
        return ["image_name", "target"], [binary_positive()]
    if challenge == "isic2017":
        tasks = [task for task in ISIC2017_TASKS if task in classes]
        if len(classes) == 2 and len(tasks) == 1:  # one of the two binary tasks
            return ["image_id", tasks[0]], [classes.index(tasks[0])]
        if len(classes) < 3 or len(tasks) != 2:
            raise refuse("classes that include melanoma and seborrheic_keratosis (the 3-class "
                         "model), or one binary task (other and melanoma, or other and "
                         "seborrheic_keratosis)")
        return ["image_id", *ISIC2017_TASKS], [classes.index(task) for task in ISIC2017_TASKS]
    if challenge == "isic2018":
        if sorted(classes) != sorted(ISIC2018_COLUMNS):
            raise refuse(f"exactly the classes {', '.join(ISIC2018_COLUMNS)}")
        return ["image", *ISIC2018_COLUMNS], [classes.index(c) for c in ISIC2018_COLUMNS]
    if challenge == "isic2019":
        if sorted(classes) not in (sorted(ISIC2019_COLUMNS[:-1]), sorted(ISIC2019_COLUMNS)):
            raise refuse(f"the classes {', '.join(ISIC2019_COLUMNS[:-1])}, with or without UNK")
        return ["image", *ISIC2019_COLUMNS], [
            classes.index(c) if c in classes else None for c in ISIC2019_COLUMNS
        ]
    raise SynergicError(
        f"unknown submission format {challenge!r}"
        f"{did_you_mean(str(challenge), SUBMISSION_FORMATS)}; "
        f"choose one of {', '.join(SUBMISSION_FORMATS)}"
    )
