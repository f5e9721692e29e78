"""A DCNN component: a backbone with the paper's classification head (§3.2)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


def uniform_init_(module: nn.Linear, init_range: float) -> None:
    """Weights and biases from U(-init_range, init_range), as the paper initialises its FCs."""
    nn.init.uniform_(module.weight, -init_range, init_range)
    if module.bias is not None:
        nn.init.uniform_(module.bias, -init_range, init_range)


class ComponentOutput(NamedTuple):
    logits: torch.Tensor  # [B, K]; softmax of these is the component's prediction
    features: torch.Tensor  # [B, hidden]: the deep feature f of eq. (2)


class DCNNComponent(nn.Module):
    """Backbone -> FC(F, hidden) -> FC(hidden, K).

    The paper replaces ResNet-50's classifier with "a fully connected layer of 1024 neurons, a
    fully connected layer of K neurons and a softmax layer", both initialised from
    U(-0.05, 0.05); the output of the first is the deep feature f fed to the synergic heads. The
    paper names no non-linearity between the two, so none is the default; ``activation="relu"``
    adds one. Softmax is applied by the loss and at inference, not here.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        *,
        hidden: int = 1024,
        init_range: float = 0.05,
        activation: str = "none",
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if activation not in ("none", "relu"):
            raise ValueError(f"activation must be 'none' or 'relu', got {activation!r}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.feature_dim = hidden
        self.embedding = nn.Linear(backbone.num_features, hidden)
        self.activation = nn.ReLU() if activation == "relu" else nn.Identity()
        self.classifier = nn.Linear(hidden, num_classes)
        uniform_init_(self.embedding, init_range)
        uniform_init_(self.classifier, init_range)

    def forward(self, images: torch.Tensor) -> ComponentOutput:
        features = self.embedding(self.backbone(images))
        return ComponentOutput(self.classifier(self.activation(features)), features)
