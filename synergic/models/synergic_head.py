"""Synergic heads (§3.3): does a pair of deep features come from the same class?"""

from __future__ import annotations

import torch
from torch import nn

from synergic.models.component import uniform_init_


class MLPSynergicHead(nn.Module):
    """The paper's synergic network: embedding (concatenation f_i∘f_j, done by the caller),
    a fully connected learning layer, and an output layer giving one "same class" logit.

    The paper does not give the learning layer's width; ``hidden=1024`` matches the components'
    feature size. The sigmoid of eq. (4) is applied in the loss (``binary_cross_entropy_with_logits``)
    for numerical stability.
    """

    def __init__(
        self, in_features: int, *, hidden: int = 1024, init_range: float | None = 0.05
    ) -> None:
        super().__init__()
        self.learning = nn.Linear(in_features, hidden)
        self.activation = nn.ReLU()
        self.output = nn.Linear(hidden, 1)
        if init_range is not None:
            uniform_init_(self.learning, init_range)
            uniform_init_(self.output, init_range)

    def forward(self, pair_features: torch.Tensor) -> torch.Tensor:
        return self.output(self.activation(self.learning(pair_features))).squeeze(-1)
