"""SDL^n: n DCNN components and one synergic head per pair of components (§3, §5)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from synergic.models.component import DCNNComponent


class ScaleGradient(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``scale`` backward.

    Placed between a component's features and the synergic heads it gives eq. (5) exactly with
    an unscaled loss: the heads receive dl^(S)/dtheta^(S) while the components receive
    lambda * (the synergic error back-propagated into them).
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def scale_gradient(tensor: torch.Tensor, scale: float) -> torch.Tensor:
    if scale == 1.0:
        return tensor
    return ScaleGradient.apply(tensor, scale)


class SynergicOutput(NamedTuple):
    logits: list[torch.Tensor]  # per component, [B, K]
    features: list[torch.Tensor]  # per component, [B, D]
    pair_logits: dict[tuple[int, int], torch.Tensor]  # per pair (i, j), i < j: [B]


def pair_key(i: int, j: int) -> str:
    return f"{i}-{j}"


class SynergicModel(nn.Module):
    """n DCNN components and C(n, 2) synergic heads.

    ``forward(streams)`` takes one image batch per component (a list of n tensors ``[B, 3, H, W]``,
    or one tensor ``[n, B, 3, H, W]``): component k sees stream k, and the head of pair (i, j)
    sees the concatenation of the features of streams i and j, row by row.
    ``synergic_grad_scale`` is lambda under the paper's update rule (see :class:`SynergicLoss`).

    For inference on single images, :meth:`predict_logits` runs every component on the same batch.
    """

    def __init__(self, components: Sequence[DCNNComponent], heads: dict[str, nn.Module]) -> None:
        super().__init__()
        if len(components) < 1:
            raise ValueError("SynergicModel needs at least one component")
        self.components = nn.ModuleList(components)
        expected = {pair_key(i, j) for i, j in self.pairs}
        if set(heads) != expected:
            raise ValueError(f"synergic heads must be keyed {sorted(expected)}, got {sorted(heads)}")
        self.heads = nn.ModuleDict(heads)

    @property
    def num_components(self) -> int:
        return len(self.components)

    @property
    def num_classes(self) -> int:
        return self.components[0].num_classes

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return list(itertools.combinations(range(len(self.components)), 2))

    def forward(
        self, streams: Sequence[torch.Tensor] | torch.Tensor, *, synergic_grad_scale: float = 1.0
    ) -> SynergicOutput:
        if len(streams) != len(self.components):
            raise ValueError(f"expected {len(self.components)} image streams, got {len(streams)}")
        outputs = [component(images) for component, images in zip(self.components, streams)]
        features = [o.features for o in outputs]
        to_heads = [scale_gradient(f, synergic_grad_scale) for f in features]
        pair_logits = {
            (i, j): self.heads[pair_key(i, j)](torch.cat([to_heads[i], to_heads[j]], dim=1))
            for i, j in self.pairs
        }
        return SynergicOutput([o.logits for o in outputs], features, pair_logits)

    def predict_logits(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Each component's logits for the same images (test time, eq. 6)."""
        return [component(images).logits for component in self.components]


def build_model(
    backbone: str,
    *,
    num_classes: int,
    components: int = 2,
    pretrained: bool = False,
    weights: str | None = None,
    weights_key: str | None = None,
    backbone_options: dict | None = None,
    hidden: int = 1024,
    init_range: float = 0.05,
    activation: str = "none",
    synergic_head: str = "mlp",
    synergic_head_options: dict | None = None,
) -> SynergicModel:
    """Build SDL^n from registry names: n independent backbones (parameters are not shared,
    §3.2), each with its head, and one synergic head per pair of components."""
    from synergic import registry
    from synergic.models.backbones import create_backbone

    parts = [
        DCNNComponent(
            create_backbone(
                backbone, pretrained=pretrained, weights=weights, weights_key=weights_key,
                **(backbone_options or {}),
            ),
            num_classes,
            hidden=hidden,
            init_range=init_range,
            activation=activation,
        )
        for _ in range(components)
    ]
    head_factory = registry.synergic_heads.get(synergic_head)
    try:
        heads = {
            pair_key(i, j): head_factory(2 * hidden, **(synergic_head_options or {}))
            for i, j in itertools.combinations(range(components), 2)
        }
    except TypeError as error:
        from synergic.errors import SynergicError

        raise SynergicError(
            f"synergic head '{synergic_head}': invalid option ({error}): "
            "check model.synergic_head.options"
        ) from None
    return SynergicModel(parts, heads)
