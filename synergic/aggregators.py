"""Aggregators: combine the components' outputs at test time (eq. 6).

Each takes the list of per-component logits ``[B, K]`` and returns class probabilities
``[B, K]`` whose argmax is the ensemble's decision.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def sum_softmax(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """The paper's rule (eq. 6): class = argmax of the summed softmax outputs.

    Returned as the mean of the softmaxes (same argmax, rows sum to 1) so it can be scored
    as a probability.
    """
    return torch.stack([x.float().softmax(dim=-1) for x in logits]).mean(dim=0)


def mean_logits(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Softmax of the mean logits."""
    return torch.stack([x.float() for x in logits]).mean(dim=0).softmax(dim=-1)


def max_softmax(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per class, the most confident component's probability, renormalised."""
    best = torch.stack([x.float().softmax(dim=-1) for x in logits]).amax(dim=0)
    return best / best.sum(dim=-1, keepdim=True)


def vote(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Fraction of components voting for each class (ties: lowest class index wins argmax)."""
    stacked = torch.stack([x.float() for x in logits])
    votes = torch.nn.functional.one_hot(stacked.argmax(dim=-1), stacked.shape[-1]).float()
    return votes.mean(dim=0)
