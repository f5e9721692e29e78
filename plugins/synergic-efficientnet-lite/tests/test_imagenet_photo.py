"""Real photographs are recognised: the weights are not only loaded, they are loaded right.

The photos ship inside scikit-image's wheel (``skimage.data.chelsea`` and ``coffee`` are read from
the installed package, not fetched), so the test needs no network; it is skipped without
scikit-image (``pip install synergic-efficientnet-lite[test]``).
"""

from __future__ import annotations

import pytest
import torch

from synergic_efficientnet_lite import create_efficientnet_lite

skimage_data = pytest.importorskip("skimage.data")

# ImageNet classes: tabby, tiger cat, Persian cat, Siamese cat, Egyptian cat.
CATS = {281, 282, 283, 284, 285}
# espresso, cup, coffee mug.
COFFEE = {967, 968, 504}


def imagenet_top5(name: str, photo) -> list[int]:
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    model = create_efficientnet_lite(name, num_classes=1000).eval()
    # timm's evaluation transform for this model: bicubic resize, centre crop at the native size,
    # and the model's own mean and std (0.5), read from the pretrained_cfg the plugin sets.
    config = resolve_data_config({}, model=model)
    assert config["mean"] == (0.5, 0.5, 0.5) and config["std"] == (0.5, 0.5, 0.5)
    image = create_transform(**config)(Image.fromarray(photo))
    with torch.no_grad():
        probabilities = model(image[None]).softmax(dim=-1)[0]
    return probabilities.topk(5).indices.tolist()


def describe(indices: list[int]) -> str:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return ", ".join(f"{i} {info.index_to_description(i)}" for i in indices)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_a_cat_is_a_cat(name):
    top5 = imagenet_top5(name, skimage_data.chelsea())
    assert top5[0] in CATS, describe(top5)
    assert len(CATS & set(top5[:3])) >= 2, describe(top5)


def test_coffee_is_coffee():
    top5 = imagenet_top5("efficientnet_lite0", skimage_data.coffee())
    assert top5[0] == 967, describe(top5)  # espresso
    assert COFFEE & set(top5[1:]), describe(top5)


def test_random_weights_do_not_see_a_cat():
    # The control: the checks above are not met by chance.
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    torch.manual_seed(0)
    model = create_efficientnet_lite("efficientnet_lite0", pretrained=False, num_classes=1000)
    image = create_transform(**resolve_data_config({}, model=model))(
        Image.fromarray(skimage_data.chelsea())
    )
    with torch.no_grad():
        top1 = model.eval()(image[None]).argmax().item()
    assert top1 not in CATS
