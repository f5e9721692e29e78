"""synergic: synergic deep learning (SDL^n) for medical image classification.

The public API for library users::

    from synergic import SynergicModel, SynergicLoss, BalancedPairSampler, Trainer, evaluate
"""

from __future__ import annotations

__version__ = "0.1.0"

from synergic.errors import SynergicError
from synergic.plugins.hookspecs import hookimpl

_LAZY = {
    "SynergicModel": "synergic.models.sdl",
    "DCNNComponent": "synergic.models.component",
    "MLPSynergicHead": "synergic.models.synergic_head",
    "create_backbone": "synergic.models.backbones",
    "build_model": "synergic.models.sdl",
    "SynergicLoss": "synergic.losses",
    "PairSampler": "synergic.sampling",
    "BalancedPairSampler": "synergic.sampling",
    "RandomPairSampler": "synergic.sampling",
    "Trainer": "synergic.training.trainer",
    "evaluate": "synergic.training.evaluation",
    "inverse_time_lr": "synergic.training.schedules",
    "aggregators": "synergic.aggregators",
    "metrics": "synergic.metrics",
    "registry": "synergic.registry",
}

__all__ = ["SynergicError", "hookimpl", "__version__", *_LAZY]


def __getattr__(name: str):
    # Lazy so that `synergic --help` and plugin discovery do not pay for importing torch.
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        value = module if module.__name__.endswith(name) else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'synergic' has no attribute {name!r}")
