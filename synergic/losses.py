"""The SDL objective (§3.4, eq. 1, 4, 5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from synergic.models.sdl import SynergicOutput


class SynergicLossTerms(NamedTuple):
    total: torch.Tensor  # what to call backward() on
    objective: torch.Tensor  # sum_k CE_k + lambda * sum_pairs BCE_pair: the number to report
    classification: list[torch.Tensor]  # CE of each component (eq. 1)
    synergic: dict[tuple[int, int], torch.Tensor]  # BCE of each pair's head (eq. 4)


def synergic_labels(labels_i: torch.Tensor, labels_j: torch.Tensor) -> torch.Tensor:
    """y_S = 1 if the two images share a class, else 0 (eq. 3)."""
    return (labels_i == labels_j).to(torch.float32)


class SynergicLoss(nn.Module):
    """Sum of the components' cross-entropies and the heads' synergic BCEs.

    ``gradient="paper"`` (default) follows eq. (5) exactly: component k is updated with
    dCE_k/dtheta_k + lambda * (synergic error back-propagated into theta_k, summed over the heads
    of its pairs) while each head is updated with its own BCE gradient, unscaled. It does so with
    ``total = sum CE + sum BCE`` and the model's gradient-scaling layer set to lambda: pass
    :attr:`feature_grad_scale` to the model as ``synergic_grad_scale``.

    ``gradient="joint"`` minimises ``sum CE + lambda * sum BCE`` with plain autograd (the heads'
    gradient is scaled by lambda too), as several other SDL implementations do.

    With lambda = 0 the components get no synergic gradient: SDL^n is then an ensemble of n
    independently trained DCNNs (the paper's ResNet-50^2 baseline); under ``"paper"`` the heads
    still learn, which keeps their accuracy observable.

    The paper's eq. (4) is printed with the log-probabilities swapped; read as the binary
    cross-entropy it names, it is ``-[y log p + (1 - y) log(1 - p)]`` with p = P(same class).
    """

    def __init__(self, synergic_weight: float = 3.0, *, gradient: str = "paper") -> None:
        super().__init__()
        if synergic_weight < 0:
            raise ValueError(f"synergic_weight (lambda) must be >= 0, got {synergic_weight}")
        if gradient not in ("paper", "joint"):
            raise ValueError(f"gradient must be 'paper' or 'joint', got {gradient!r}")
        self.synergic_weight = float(synergic_weight)
        self.gradient = gradient

    @property
    def feature_grad_scale(self) -> float:
        """The ``synergic_grad_scale`` to run the model with."""
        return self.synergic_weight if self.gradient == "paper" else 1.0

    def forward(
        self, output: SynergicOutput, labels: Sequence[torch.Tensor] | torch.Tensor
    ) -> SynergicLossTerms:
        """``labels[k]`` are the class labels of stream k, ``[B]`` each."""
        classification = [F.cross_entropy(logits.float(), y) for logits, y in zip(output.logits, labels)]
        synergic = {
            (i, j): F.binary_cross_entropy_with_logits(
                logits.float(), synergic_labels(labels[i], labels[j])
            )
            for (i, j), logits in output.pair_logits.items()
        }
        ce = torch.stack(classification).sum()
        bce = torch.stack(list(synergic.values())).sum() if synergic else ce.new_zeros(())
        objective = ce + self.synergic_weight * bce
        total = ce + bce if self.gradient == "paper" else objective
        return SynergicLossTerms(total, objective, classification, synergic)
