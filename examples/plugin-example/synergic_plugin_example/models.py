"""The backbone ``small_cnn``: a plain PyTorch module, usable without synergic."""

from __future__ import annotations

import torch
from torch import nn

from synergic.errors import SynergicError


class SmallCNN(nn.Module):
    """Three strided 3x3 convolutions and global average pooling: images to ``num_features``."""

    # synergic normalises the images with these (ImageNet's mean and std when absent).
    pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out_channels in (width, 2 * width, 4 * width):
            layers += [
                nn.Conv2d(channels, out_channels, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            channels = out_channels
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = channels  # required: the size of the features forward() returns

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)


def small_cnn(*, pretrained: bool, weights: str | None, width: int = 16) -> SmallCNN:
    """A small CNN trained from scratch (option: width, default 16; features: 4 x width)."""
    if pretrained and weights is None:
        raise SynergicError(
            "backbone 'small_cnn' has no pretrained weights: set model.backbone.pretrained=false "
            "or model.backbone.weights to a file saved with torch.save(model.state_dict(), PATH)"
        )
    model = SmallCNN(width)
    if weights is not None:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model
