"""The hooks a synergic plugin can implement.

A plugin is a module (or any object) with functions marked ``@synergic.hookimpl`` whose names are
the hooks below. Each ``register_*`` hook is handed a ``register(name, factory, description="")``
callback; calling it adds the factory to synergic's registry of that kind, recorded as coming from
your plugin. Expose the module through the ``synergic`` entry-point group in your pyproject::

    [project.entry-points.synergic]
    myplugin = "myplugin"
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("synergic")
hookimpl = pluggy.HookimplMarker("synergic")


@hookspec
def register_backbones(register):
    """Register backbone factories.

    A factory is called as ``factory(*, pretrained: bool, weights: str | None, **options)`` and
    returns an ``nn.Module`` mapping float images ``[B, 3, H, W]`` to features ``[B, F]``, with an
    attribute ``num_features: int`` (a timm model made with ``num_classes=0`` qualifies). Its
    ``pretrained_cfg`` (``mean``, ``std``) gives the input normalisation; ImageNet's is used
    otherwise. ``model.backbone.options`` of a recipe arrive as keyword arguments.
    """


@hookspec
def register_datasets(register):
    """Register data-set factories.

    A factory is called as ``factory(*, root: str | None, split: str, **options)`` with split
    ``"train"``, ``"val"`` or ``"test"``, and returns an object with ``classes: list[str]``,
    ``ids: list[str]``, ``labels: list[int]``, ``__len__`` and ``__getitem__(i) -> (image, label)``
    where image is a PIL image or a uint8 ``[3, H, W]`` tensor. A data set without a validation
    split raises :class:`synergic.data.NoSuchSplit` for ``"val"`` and the framework carves a
    stratified one from ``"train"``. ``data.options`` of a recipe arrive as keyword arguments.
    """


@hookspec
def register_pair_samplers(register):
    """Register pair samplers.

    A sampler is a class called as ``cls(labels, *, num_streams, batch_size, seed, **options)``
    whose ``sample(step) -> LongTensor[num_streams, batch_size]`` gives the data-set indices each
    component sees at ``step``, deterministically from ``(seed, step)``
    (see :class:`synergic.sampling.PairSampler`).
    """


@hookspec
def register_synergic_heads(register):
    """Register synergic heads.

    A factory is called as ``factory(in_features: int, **options)`` and returns an ``nn.Module``
    mapping the concatenated deep features of a pair, ``[B, in_features]``, to one "same class"
    logit per pair, ``[B]``.
    """


@hookspec
def register_aggregators(register):
    """Register aggregators.

    An aggregator is a function ``fn(logits: list[Tensor[B, K]]) -> Tensor[B, K]`` that combines
    the components' outputs into class probabilities (rows summing to 1).
    """


@hookspec
def register_commands(cli):
    """Add subcommands to the ``synergic`` command: ``cli`` is its ``click.Group``."""
