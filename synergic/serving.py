"""Use a finished run: re-evaluate it, or classify new images with it."""

from __future__ import annotations

from pathlib import Path

import torch

from synergic.errors import SynergicError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def load_run(run_dir: Path, checkpoint: str = "last"):
    """The recipe and the trained model of a run directory, and the checkpoint's class names."""
    from synergic.models.sdl import build_model
    from synergic.recipe import load_recipe
    from synergic.training.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file():
        raise SynergicError(f"{run_dir} holds no synergic run (no recipe.yaml)")
    recipe = load_recipe(run_dir / "recipe.yaml")
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    if not path.is_file():
        hint = " (best.pt exists only for runs with a validation split)" if checkpoint == "best" else ""
        raise SynergicError(f"{path} not found{hint}")
    state = load_checkpoint(path)
    classes = list(state.get("metadata", {}).get("classes") or [])
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
    return recipe, model, classes


def evaluate_run(run_dir: Path, *, split: str = "test", checkpoint: str = "last") -> dict:
    from synergic import registry
    from synergic.experiment import prepare_data
    from synergic.models.backbones import backbone_normalization
    from synergic.training.evaluation import evaluate
    from synergic.training.trainer import resolve_device

    recipe, model, classes = load_run(run_dir, checkpoint)
    data = prepare_data(recipe, progress=True)
    chosen = {"test": data.test, "val": data.validation, "train": data.train}[split]
    if chosen is None:
        raise SynergicError(f"the run's data set has no {split} split")
    mean, std = backbone_normalization(model.components[0].backbone)
    result = evaluate(
        model, chosen.images, chosen.labels, mean=mean, std=std,
        aggregator=registry.aggregators.get(recipe.model.aggregator),
        batch_size=recipe.train.eval_batch_size, device=resolve_device(recipe.train.device),
    )
    return {"aggregate": result.metrics, "components": result.component_metrics}


def _image_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise SynergicError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise SynergicError(f"{path} not found")
    return files


@torch.inference_mode()
def predict_images(run_dir: Path, paths: list[Path], *, checkpoint: str = "last"):
    """``(classes, [(path, probabilities), ...])`` for image files or folders of images."""
    import numpy as np

    from synergic import registry
    from synergic.data.images import load_image, resize_image
    from synergic.models.backbones import backbone_normalization
    from synergic.training.evaluation import predict

    recipe, model, classes = load_run(run_dir, checkpoint)
    files = _image_files([Path(p) for p in paths])
    size = recipe.data.image_size
    images = torch.stack([
        torch.from_numpy(
            np.asarray(resize_image(load_image(f, min_size=size), size, recipe.data.resize)).copy()
        ).permute(2, 0, 1)
        for f in files
    ])
    mean, std = backbone_normalization(model.components[0].backbone)
    logits = predict(model, images, mean=mean, std=std, batch_size=recipe.train.eval_batch_size)
    probabilities = registry.aggregators.get(recipe.model.aggregator)(logits)
    return classes, [(str(f), row) for f, row in zip(files, probabilities.tolist())]
