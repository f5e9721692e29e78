"""Where a trained run looked: class activation maps (Grad-CAM and its relatives) per component.

The maps are computed by `pytorch-grad-cam <https://github.com/jacobgil/pytorch-grad-cam>`_
(the ``grad-cam`` package: ``pip install "synergic[explain]"``); synergic finds the layer to
explain in any timm backbone, runs the images through the run's stored preprocessing (the same
path as ``synergic predict``, :mod:`synergic.data.preprocess`) and draws the overlays.

* The **layer** is the backbone's last feature stage, as timm records it
  (``backbone.feature_info[-1]["module"]``: ``layer4`` of a ResNet, the last ``blocks`` stage of an
  EfficientNet); for a vision transformer the ``norm1`` of its last block, whose patch tokens
  still receive a gradient when the class token alone is classified (as pytorch-grad-cam advises).
  A backbone without ``feature_info`` is probed with one image: the last module whose output is
  a feature map ``[B, C, H, W]``. Token sequences ``[B, T, C]`` are reshaped to ``[B, C, h, w]``
  after dropping the backbone's ``num_prefix_tokens``; NHWC stages (``output_fmt = "NHWC"``,
  e.g. Swin) are permuted.
* A component's map is the method's CAM of that component's **logit** for the explained class,
  at the input size ``S x S``, scaled to [0, 1] per image by pytorch-grad-cam.
* The **aggregate**'s map is the mean of all components' maps for the aggregate's class. SDL's
  aggregate (eq. 6 of Zhang et al., MICCAI 2018) sums the components' softmax outputs, so each
  component counts equally; so does each component's map here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from synergic.errors import SynergicError, did_you_mean

#: ``--method`` names and the pytorch-grad-cam classes that compute them.
METHODS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
    "gradcam-elementwise": "GradCAMElementWise",
    "scorecam": "ScoreCAM",
}

EXPLAIN_INSTALL = 'pip install "synergic[explain]"'


def require_grad_cam():
    """The ``pytorch_grad_cam`` module.

    Raises:
        SynergicError: the ``grad-cam`` package is not installed (the message gives the pip
            command).
    """
    try:
        import pytorch_grad_cam
    except ImportError:
        raise SynergicError(
            f"explanations need the grad-cam package (pytorch-grad-cam): {EXPLAIN_INSTALL}"
        ) from None
    return pytorch_grad_cam


class ComponentLogits(nn.Module):
    """A :class:`~synergic.models.component.DCNNComponent` as pytorch-grad-cam wants a model:
    images ``[B, 3, S, S]`` -> logits ``[B, K]``."""

    def __init__(self, component: nn.Module) -> None:
        super().__init__()
        self.component = component

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.component(images).logits


@dataclass(frozen=True)
class TargetLayer:
    """The layer of a backbone that a CAM explains."""

    name: str
    """Its name in ``backbone.named_modules()`` (e.g. ``layer4``, ``blocks.5.norm1``)."""
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None
    """Turns its output into ``[B, C, h, w]``; None when it already is."""


def default_layer_name(backbone: nn.Module) -> str | None:
    """The name of ``backbone``'s last feature stage from timm's ``feature_info`` (for a vision
    transformer: that block's ``norm1``), or None when the backbone does not record one."""
    info = getattr(backbone, "feature_info", None)
    try:
        name = info[-1]["module"] if info else None
    except (KeyError, IndexError, TypeError):
        name = None
    if not isinstance(name, str):
        return None
    modules = dict(backbone.named_modules())
    if name not in modules:
        return None
    if getattr(backbone, "num_prefix_tokens", None) is not None and hasattr(modules[name], "norm1"):
        # A transformer block: its output's patch tokens get no gradient from a class-token head.
        return f"{name}.norm1"
    return name


def find_target_layer(
    backbone: nn.Module, image_size: int, layer: str | None = None
) -> TargetLayer:
    """The layer to explain in ``backbone`` and how to reshape its output, checked with one
    forward pass of a zero image ``[1, 3, image_size, image_size]``.

    ``layer``: a name from ``backbone.named_modules()``; by default :func:`default_layer_name`,
    else the last module whose output is a feature map ``[1, C, H, W]`` with ``H, W > 1``.

    Raises:
        SynergicError: an unknown ``layer`` (naming the closest names), or a layer whose output
            cannot be made a feature map (the message says to pass ``--layer``).
    """
    modules = dict(backbone.named_modules())
    if layer is not None and layer not in modules:
        examples = [n for n in modules if n and n.count(".") <= 1][-6:]
        raise SynergicError(
            f"--layer {layer!r} is not a module of the backbone{did_you_mean(layer, modules)}: "
            f"use a name from backbone.named_modules(), e.g. {', '.join(examples)}"
        )
    name = layer or default_layer_name(backbone)
    outputs = _probe_outputs(backbone, image_size, [name] if name else list(modules))
    if name is None:
        maps = [n for n, shape in outputs if n and len(shape) == 4 and min(shape[2:]) > 1]
        if not maps:
            raise SynergicError(
                f"{type(backbone).__name__} has no layer with a [B, C, H, W] output to explain: "
                "pass --layer NAME of a module of the backbone"
            )
        name = maps[-1]
    shape = dict(outputs)[name]
    return TargetLayer(name, _reshape_for(backbone, name, shape))


def _probe_outputs(
    backbone: nn.Module, image_size: int, names: list[str]
) -> list[tuple[str, tuple]]:
    """``(name, output shape)`` of the named modules, in the order they ran on one zero image."""
    modules = dict(backbone.named_modules())
    seen: list[tuple[str, tuple]] = []
    handles = [
        modules[n].register_forward_hook(
            lambda _m, _i, out, n=n: seen.append((n, tuple(out.shape)))
            if isinstance(out, torch.Tensor) else None
        )
        for n in names
    ]
    parameter = next(backbone.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = backbone.training
    try:
        backbone.eval()
        with torch.no_grad():
            backbone(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        backbone.train(was_training)
        for handle in handles:
            handle.remove()
    return seen


def _reshape_for(backbone: nn.Module, name: str, shape: tuple):
    if len(shape) == 4:
        if str(getattr(backbone, "output_fmt", "NCHW")).endswith("NHWC"):  # (a str or an enum)
            return _nhwc_to_nchw
        return None
    if len(shape) == 3:
        prefix = int(getattr(backbone, "num_prefix_tokens", 0) or 0)
        side = math.isqrt(max(shape[1] - prefix, 0))
        if side > 0 and side * side == shape[1] - prefix:
            return TokensToMap(prefix, side)
    raise SynergicError(
        f"layer {name!r} outputs {list(shape)}, which is neither a feature map [B, C, H, W] nor a "
        "square grid of tokens [B, T, C]: pass --layer NAME of a layer that outputs feature maps"
    )


def _nhwc_to_nchw(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.permute(0, 3, 1, 2)


class TokensToMap:
    """A transformer's tokens ``[B, prefix + side * side, C]`` as a map ``[B, C, side, side]``
    (the class and register tokens dropped)."""

    def __init__(self, prefix: int, side: int) -> None:
        self.prefix, self.side = prefix, side

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        grid = tokens[:, self.prefix :, :]
        return grid.reshape(grid.shape[0], self.side, self.side, grid.shape[2]).permute(0, 3, 1, 2)


def component_cams(
    model: nn.Module,
    images: torch.Tensor,
    targets: Sequence[int],
    *,
    method: str = "gradcam",
    layer: str | None = None,
) -> np.ndarray:
    """Each component's class activation map for normalised ``images``.

    Args:
        model: a :class:`~synergic.models.sdl.SynergicModel` (or anything with ``components``,
            each mapping images to an output with ``.logits``), on the device of ``images``.
        images: float ``[B, 3, S, S]``, normalised as the model was trained (mean/std).
        targets: ``B`` class indices, one per image.
        method: a key of :data:`METHODS`.
        layer: a module name inside each component's backbone; default: :func:`find_target_layer`.

    Returns:
        float32 ``[n_components, B, S, S]``, each map scaled to [0, 1] by pytorch-grad-cam.

    Raises:
        SynergicError: unknown method, missing grad-cam package, or a layer that cannot be
            explained (see :func:`find_target_layer`).
    """
    grad_cam = require_grad_cam()
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if method not in METHODS:
        raise SynergicError(
            f"unknown explanation method {method!r}{did_you_mean(method, METHODS)}: valid "
            f"methods are {', '.join(METHODS)}"
        )
    cam_class = getattr(grad_cam, METHODS[method])
    maps = []
    for component in model.components:
        target = find_target_layer(component.backbone, images.shape[-1], layer)
        module = dict(component.backbone.named_modules())[target.name]
        with cam_class(
            model=ComponentLogits(component), target_layers=[module],
            reshape_transform=target.reshape_transform,
        ) as cam:
            maps.append(cam(input_tensor=images, targets=[ClassifierOutputTarget(int(k))
                                                            for k in targets]))
    return np.stack(maps).astype(np.float32)


def resolve_target(target: str | int, classes: Sequence[str]) -> int:
    """The class index that ``target`` (a class name, or an index as an int or a string) names.

    Raises:
        SynergicError: no such class.
    """
    if isinstance(target, str) and target in classes:
        return list(classes).index(target)
    try:
        index = int(target)
    except (TypeError, ValueError):
        index = None
    if index is not None and 0 <= index < len(classes):
        return index
    raise SynergicError(
        f"--target {target!r} is not a class of the run{did_you_mean(str(target), classes)}: "
        f"its classes are {', '.join(classes)} (or an index 0..{len(classes) - 1})"
    )


@dataclass
class Explanation:
    """One explained image and view (a component or the aggregate)."""

    image: str
    """The image file."""
    view: str
    """``component 1``, ``component 2``, ... or ``aggregate``."""
    class_index: int
    class_name: str
    probability: float
    """The view's probability of the class: a component's softmax, the aggregate's output."""
    heatmap: np.ndarray
    """float32 ``[S, S]`` in [0, 1], on the preprocessed (resized) image."""
    overlay: Path | None = None
    """The PNG written, if any."""


def explain_images(
    run_dir: Path,
    paths: Sequence[Path],
    *,
    method: str = "gradcam",
    components: Sequence[int] | None = None,
    target: str | int | None = None,
    layer: str | None = None,
    checkpoint: str = "last",
    output_dir: Path | None = None,
    overrides: Sequence[str] = (),
) -> list[Explanation]:
    """Class activation maps of a run's components and aggregate for image files or folders.

    Each image is read with the run's stored preprocessing, as ``synergic predict`` reads it; the
    class explained is the aggregate's prediction (the probabilities of ``synergic predict``), or
    ``target`` (a class name or index). Every component is explained, because the aggregate's map
    is their mean; ``components`` (1-based) selects which components' maps are returned and
    written. With ``output_dir``, writes ``<image>_component<k>_<class>.png`` and
    ``<image>_aggregate_<class>.png`` (the map over the preprocessed image, pytorch-grad-cam's
    ``show_cam_on_image``) and ``explanations.csv`` (image, view, class, class_index,
    probability, method, layer, overlay).

    Raises:
        SynergicError: as :func:`synergic.serving.open_run`; no images; an unknown method,
            layer, class or component; the grad-cam package missing.
    """
    from synergic import registry
    from synergic.serving import image_files, open_run
    from synergic.training.evaluation import predict
    from synergic.training.trainer import resolve_device

    require_grad_cam()
    if method not in METHODS:
        raise SynergicError(
            f"unknown explanation method {method!r}{did_you_mean(method, METHODS)}: valid "
            f"methods are {', '.join(METHODS)}"
        )
    run = open_run(Path(run_dir), checkpoint, overrides=overrides)
    n = run.model.num_components
    chosen = sorted(set(components)) if components else list(range(1, n + 1))
    wrong = [k for k in chosen if not 1 <= k <= n]
    if wrong:
        raise SynergicError(
            f"--component {wrong[0]}: the run has {n} components, numbered 1 to {n}"
        )
    target_index = None if target is None else resolve_target(target, run.classes)
    files = image_files(paths)
    device = resolve_device(run.recipe.train.device)
    preprocessing = run.preprocessing
    pixels = torch.stack([preprocessing.load(f) for f in files])
    recipe = run.recipe
    # The probabilities `synergic predict` gives: same call, same settings.
    logits = predict(
        run.model, pixels, mean=preprocessing.mean, std=preprocessing.std,
        batch_size=recipe.train.eval_batch_size, device=device, precision=recipe.train.precision,
        channels_last=recipe.train.channels_last, tta=recipe.train.tta,
    )
    aggregate = registry.aggregators.get(recipe.model.aggregator)(logits)
    classes_explained = (
        aggregate.argmax(dim=1) if target_index is None
        else torch.full((len(files),), target_index, dtype=torch.long)
    )
    layer_name = find_target_layer(
        run.model.components[0].backbone, preprocessing.image_size, layer
    ).name
    model = run.model.to(device)
    maps = []
    batch = 16
    for start in range(0, len(files), batch):
        images = preprocessing.normalize(pixels[start : start + batch].to(device))
        maps.append(component_cams(
            model, images, classes_explained[start : start + batch].tolist(), method=method,
            layer=layer,
        ))
    cams = np.concatenate(maps, axis=1)  # [n, N, S, S]
    explanations: list[Explanation] = []
    for i, path in enumerate(files):
        k = int(classes_explained[i])
        for c in chosen:
            probability = float(logits[c - 1][i].float().softmax(dim=-1)[k])
            explanations.append(Explanation(str(path), f"component {c}", k, run.classes[k],
                                            probability, cams[c - 1, i]))
        explanations.append(Explanation(str(path), "aggregate", k, run.classes[k],
                                        float(aggregate[i, k]), cams[:, i].mean(axis=0)))
    if output_dir is not None:
        write_explanations(explanations, files, pixels, Path(output_dir), method=method,
                           layer=layer_name)
    return explanations


def write_explanations(
    explanations: list[Explanation], files: Sequence[Path], pixels: torch.Tensor, output_dir: Path,
    *, method: str, layer: str,
) -> None:
    """Write each explanation's overlay PNG and ``explanations.csv`` into ``output_dir``; sets
    each explanation's ``overlay``. Every file is written atomically."""
    import io

    from PIL import Image
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from synergic.data.names import CsvWriter, printable_name
    from synergic.rundir import write_text_atomically
    from synergic.training.checkpoint import atomic_write

    stems = _unique_stems(files)
    rgb = {str(f): pixels[i].permute(1, 2, 0).numpy().astype(np.float32) / 255.0
           for i, f in enumerate(files)}
    stem_of = {str(f): stems[i] for i, f in enumerate(files)}
    buffer = io.StringIO()
    writer = CsvWriter(buffer)
    writer.writerow(["image", "view", "class", "class_index", "probability", "method", "layer",
                     "overlay"])
    for e in explanations:
        view = e.view.replace("component ", "component")
        name = f"{stem_of[e.image]}_{view}_{_safe(e.class_name)}.png"
        overlay = show_cam_on_image(rgb[e.image], e.heatmap, use_rgb=True)
        png = io.BytesIO()
        Image.fromarray(overlay).save(png, format="PNG")
        atomic_write(output_dir / name, lambda handle, data=png.getvalue(): handle.write(data))
        e.overlay = output_dir / name
        writer.writerow([printable_name(e.image), e.view, e.class_name, e.class_index,
                         repr(e.probability), method, layer, name])
    write_text_atomically(output_dir / "explanations.csv", buffer.getvalue())


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_") or "class"


def _unique_stems(files: Sequence[Path]) -> list[str]:
    stems: list[str] = []
    for f in files:
        stem, n = _safe(Path(f).stem), 2
        while stem in stems:
            stem, n = f"{_safe(Path(f).stem)}-{n}", n + 1
        stems.append(stem)
    return stems
