"""Backbones: any timm model (headless, pooled features) or a registered factory.

A backbone is a plain ``nn.Module`` mapping float images ``[B, 3, H, W]`` to features ``[B, F]``
with an attribute ``num_features == F``. Weights come from timm's usual source
(``pretrained=True``) or from a local file (``weights=PATH``), which is verified tensor by tensor:
timm itself loads a file whose keys do not match at all without complaint when the classifier
size differs, so a wrong file would otherwise train from random weights in silence.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from synergic.errors import SynergicError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Prefixes wrapping a state dict in common checkpoint formats (DDP, torchvision/timm trainers).
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "state_dict_ema", "model_ema")
_STRIP_PREFIXES = ("module.", "model.", "backbone.", "_orig_mod.")


def create_backbone(
    name: str, *, pretrained: bool = False, weights: str | Path | None = None, **options
) -> nn.Module:
    """Build the backbone called ``name``: a registered factory, else a timm model.

    ``weights`` (a local ``.safetensors``, ``.pt``/``.pth``/``.bin`` state dict) wins over
    ``pretrained`` and needs no network. Remaining ``options`` go to the factory
    (for timm: ``timm.create_model`` keyword arguments such as ``drop_rate``).
    """
    from synergic import registry

    if name in registry.backbones:
        entry = registry.backbones.entry(name)
        try:
            backbone = entry.factory(pretrained=pretrained, weights=weights, **options)
        except TypeError as error:
            raise SynergicError(
                f"backbone '{name}' (from {entry.origin}): invalid option ({error}): "
                "check model.backbone.options"
            ) from None
    else:
        backbone = create_timm_backbone(name, pretrained=pretrained, weights=weights, **options)
    if not isinstance(getattr(backbone, "num_features", None), int):
        raise SynergicError(
            f"backbone '{name}' has no integer attribute 'num_features': a backbone factory must "
            "return a module with num_features (the size of its pooled features)"
        )
    return backbone


def create_timm_backbone(
    name: str, *, pretrained: bool = False, weights: str | Path | None = None, **options
) -> nn.Module:
    """A headless timm model (``num_classes=0``: pooled features of size ``num_features``)."""
    import timm

    if not timm.is_model(name):
        from synergic import registry

        raise SynergicError(
            registry.backbones.unknown_message(name, extra_candidates=timm.list_models())
            + " (or any timm model name)"
        )
    options = {k: v for k, v in options.items() if v is not None}
    use_hub = pretrained and weights is None
    try:
        model = timm.create_model(name, pretrained=use_hub, num_classes=0, **options)
    except TypeError as error:
        raise SynergicError(f"backbone '{name}': invalid option: {error}") from None
    except (OSError, RuntimeError, ValueError) as error:
        if use_hub:
            raise SynergicError(
                f"ImageNet weights for {name} cannot be downloaded here ({type(error).__name__}): "
                "set model.backbone.weights to a local file, or model.backbone.pretrained=false"
            ) from None
        raise
    if weights is not None:
        load_backbone_weights(model, weights)
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file (safetensors, or a torch state dict loaded weights-only)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SynergicError(f"weights file {path} not found: check model.backbone.weights")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise SynergicError(
            f"weights file {path} could not be read as safetensors or a torch state dict "
            f"({type(error).__name__}: {error})"
        ) from None
    for _ in range(3):  # unwrap {"state_dict": {...}}, {"model": {...}} ...
        if isinstance(state, Mapping) and not _is_tensor_dict(state):
            inner = next((state[k] for k in _WRAPPER_KEYS if k in state), None)
            if inner is None:
                break
            state = inner
    if not isinstance(state, Mapping) or not _is_tensor_dict(state):
        raise SynergicError(f"weights file {path} holds no state dict of tensors")
    state = dict(state)
    for prefix in _STRIP_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _is_tensor_dict(mapping: Mapping) -> bool:
    return bool(mapping) and all(isinstance(v, torch.Tensor) for v in mapping.values())


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load ``path`` into ``model`` and check that every backbone tensor was really loaded.

    Tensors of a classifier that the headless backbone does not have (``fc.*``,
    ``classifier.*``, ``head.*``) are ignored; any backbone tensor missing from the file, or of
    another shape, or a file that is mostly keys the model does not have, is refused.
    """
    state = read_state_dict(path)
    expected = model.state_dict()
    classifier_prefixes = _classifier_prefixes(model)
    unexpected = [
        k for k in state if k not in expected and not k.startswith(classifier_prefixes)
    ]
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        example = ", ".join(missing[:3])
        raise SynergicError(
            f"weights file {path} does not match this backbone: {len(missing)} of "
            f"{len(expected)} tensors missing (e.g. {example}); "
            f"{len(unexpected)} keys of the file are unknown to it. "
            "Check model.backbone.name and model.backbone.weights"
        )
    if unexpected:
        raise SynergicError(
            f"weights file {path} has {len(unexpected)} tensors this backbone does not have "
            f"(e.g. {', '.join(unexpected[:3])}): check model.backbone.name"
        )
    wrong_shape = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if wrong_shape:
        k = wrong_shape[0]
        raise SynergicError(
            f"weights file {path}: tensor {k} has shape {tuple(state[k].shape)}, the backbone "
            f"expects {tuple(expected[k].shape)}: check model.backbone.name"
        )
    model.load_state_dict({k: state[k] for k in expected if k in state}, strict=False)


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ("fc", "classifier", "head", "head.fc", "last_linear")
    if isinstance(names, str):
        names = (names,)
    return tuple(f"{n}." for n in names)


def backbone_normalization(backbone: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Input mean and std from the backbone's ``pretrained_cfg``, ImageNet's otherwise."""
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    mean = tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in cfg.get("std", IMAGENET_STD))
    return mean, std
