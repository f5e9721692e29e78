"""What synergic expects of the components a plugin registers, as typed Protocols.

A plugin registers *factories* (functions or classes) through the hooks of
:mod:`synergic.plugins.hookspecs`; synergic calls them with the recipe's settings. This module
writes down the call each factory receives and what it must return, so that a type checker can
check a plugin and a reader can see the whole contract in one place::

    from synergic.contracts import BackboneFactory

    def my_backbone(*, pretrained: bool, weights: str | None, width: int = 32) -> nn.Module: ...

    factory: BackboneFactory = my_backbone   # checked by mypy / pyright

The Protocols carry no behaviour and nothing has to inherit from them. Options from a recipe
(``model.backbone.options``, ``data.options``, ``model.synergic_head.options``,
``train.sampler.options``) arrive as keyword arguments; a factory declares the ones it accepts
(an option it does not declare is then an error before training starts). The ``**options`` in
the signatures below stands for those declared keyword arguments.

Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from synergic.data import ImageDataset

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "Aggregator",
    "Backbone",
    "BackboneFactory",
    "DatasetFactory",
    "ImageDataset",
    "PairSampler",
    "PairSamplerFactory",
    "SynergicHeadFactory",
]


@runtime_checkable
class Backbone(Protocol):
    """A feature extractor: an ``nn.Module`` mapping float images ``[B, 3, H, W]`` to ``[B, F]``.

    ``num_features`` is ``F``. A timm model created with ``num_classes=0`` qualifies. When the
    module has a ``pretrained_cfg`` dict with ``mean`` and ``std``, synergic normalises the images
    with them; otherwise with ImageNet's (``synergic.models.backbones.backbone_normalization``).
    Images arrive as floats in [0, 1] before that normalisation.
    """

    num_features: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


class BackboneFactory(Protocol):
    """Registered with ``register_backbones``; returns a :class:`Backbone`.

    ``pretrained``: start from the factory's own pretrained weights (``model.backbone.pretrained``).
    ``weights``: a local weights file that wins over ``pretrained`` (``model.backbone.weights``);
    ``None`` when not given. A factory that cannot honour either raises
    :class:`synergic.errors.SynergicError` with a one-line message saying what to set instead.
    """

    def __call__(self, *, pretrained: bool, weights: str | None, **options: Any) -> nn.Module: ...


class DatasetFactory(Protocol):
    """Registered with ``register_datasets``; returns an :class:`ImageDataset` for one split.

    ``root``: ``data.root`` of the recipe (``None`` when not given: use your default folder).
    ``split``: ``"train"``, ``"val"`` or ``"test"``. A data set without a validation split raises
    :class:`synergic.data.NoSuchSplit` for ``"val"``, and synergic carves a stratified one out of
    ``"train"`` (``data.validation_fraction``). Every split must have the same ``classes``.
    ``data.download: true`` arrives as ``download=True``. Missing files are a one-line
    :class:`synergic.errors.SynergicError` naming the path and what to do.
    """

    def __call__(self, *, root: str | None, split: str, **options: Any) -> ImageDataset: ...


@runtime_checkable
class PairSampler(Protocol):
    """Which training images each component sees at each step.

    ``sample(step)`` returns a ``LongTensor[num_streams, batch_size]`` of data-set indices: row k
    feeds component k, column b is the b-th tuple whose "same class?" labels the synergic heads
    learn. It must be a pure function of ``(seed, step)`` (use
    :func:`synergic.sampling.step_generator`): a resumed or distributed run then sees the same
    pairs with no sampler state to save. :class:`synergic.sampling.PairSampler` is a base class
    that checks the arguments and builds the class -> indices table.
    """

    def sample(self, step: int) -> torch.Tensor: ...


class PairSamplerFactory(Protocol):
    """Registered with ``register_pair_samplers`` (usually a class); returns a :class:`PairSampler`.

    ``labels``: the class index of every training image. ``num_streams``: the number of
    components (``model.components``). ``batch_size``: tuples per step (``train.batch_size``).
    ``seed``: the recipe's seed. Invalid options raise ``ValueError`` or ``TypeError``; synergic
    reports them under ``train.sampler``.
    """

    def __call__(
        self, labels: Sequence[int], *, num_streams: int, batch_size: int, seed: int,
        **options: Any,
    ) -> PairSampler: ...


class SynergicHeadFactory(Protocol):
    """Registered with ``register_synergic_heads``; returns the synergic network of one pair.

    The module maps the concatenated deep features of two components, ``[B, in_features]``, to
    one "same class" logit per pair, ``[B]`` (no sigmoid: the loss applies it). ``in_features`` is
    twice the width of the components' feature layer (``model.head.hidden``).
    """

    def __call__(self, in_features: int, **options: Any) -> nn.Module: ...


class Aggregator(Protocol):
    """Registered with ``register_aggregators``: combines the components' outputs at test time.

    Takes one logits tensor ``[B, K]`` per component and returns class probabilities ``[B, K]``
    whose rows sum to 1 (the paper's rule is ``sum_softmax``).
    """

    def __call__(self, logits: Sequence[torch.Tensor]) -> torch.Tensor: ...
