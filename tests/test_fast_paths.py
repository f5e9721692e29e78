"""The fast paths compute what the plain ones do.

- the decoded-image cache equals decoding and resizing each image with PIL on access;
- the batched augmentation of a training step equals torchvision's per-image rotation and flips;
- ``Trainer.train_step`` equals a minimal SDL step written out in plain PyTorch (the reference of
  the benchmarks, ``benchmarks/synergic_bench/steps.py``), loss and updated weights alike, fused
  components or not;
- batched inference equals running each component on the normalised images.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from synergic import BalancedPairSampler, SynergicLoss, Trainer, build_model
from synergic.data.cache import cached_decode
from synergic.data.datasets.base import FileImageDataset
from synergic.sampling import step_generator
from synergic.training.evaluation import predict
from synergic.training.trainer import Augmentation, default_optimizer

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_bench():
    """``benchmarks/synergic_bench/steps.py``, where the hand-written step lives."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    from synergic_bench import steps

    return steps


def plain_decode(path: Path, size: int) -> torch.Tensor:
    """What a per-image Dataset does: full decode, RGB, bicubic resize, as uint8 [3, S, S]."""
    with Image.open(path) as image:
        resized = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)


class PILImages:
    """A data set that hands out PIL images and has no ``load_resized``: the cache must decode
    and resize exactly as the plain path does."""

    def __init__(self, paths):
        self.files = list(paths)  # not ``paths``: this data set stays out of the disk cache
        self.labels = [k % 2 for k in range(len(self.files))]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        with Image.open(self.files[index]) as image:
            return image.convert("RGB"), self.labels[index]


def write_images(folder: Path, sizes) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir()
    paths = []
    for k, (width, height) in enumerate(sizes):
        # Smooth content plus noise, like a photo; PNG so that the test is about resizing.
        yy, xx = np.mgrid[0:height, 0:width]
        base = 128 + 80 * np.sin(xx / 17.0)[..., None] * np.cos(yy / 23.0)[..., None]
        pixels = np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
        path = folder / f"image_{k}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def test_cache_equals_plain_per_image_decode_and_resize(tmp_path):
    paths = write_images(tmp_path / "images", [(97, 61), (40, 40), (130, 90)])
    dataset = PILImages(paths)
    first = cached_decode(dataset, image_size=32, cache_dir=tmp_path / "cache")
    plain = torch.stack([plain_decode(p, 32) for p in paths])
    assert torch.equal(first, plain)
    # The generic data set has no files to key a disk entry on, so build one that does.
    files = FileImageDataset(["a", "b"], [p.stem for p in paths], dataset.labels, paths, name="pngs")
    written = cached_decode(files, image_size=32, cache_dir=tmp_path / "cache")
    read_back = cached_decode(files, image_size=32, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    assert torch.equal(written, plain) and torch.equal(read_back, plain)


def test_cache_of_real_isic_images_equals_plain_decode(isic_sample):
    # The sample's 512 x 384 JPEGs: at 224 px no reduced-scale (draft) decoding applies.
    paths = sorted((isic_sample / "ISBI2016_ISIC_Part3_Training_Data").glob("*.jpg"))
    small = [p for p in paths if max(Image.open(p).size) <= 512][:6]
    dataset = FileImageDataset(["benign", "malignant"], [p.stem for p in small], [0] * len(small),
                               small, name="isic sample")
    cached = cached_decode(dataset, image_size=224, cache_dir=None)
    assert torch.equal(cached, torch.stack([plain_decode(p, 224) for p in small]))


def test_draft_decoding_of_large_isic_jpegs_stays_close_to_full_decode(isic_sample):
    # Large JPEGs are decoded at a reduced DCT scale before the bicubic resize (load_image's
    # min_size): faster, but not bit-identical to a full decode. Keep the difference small.
    large = [p for p in sorted(isic_sample.glob("*/*.jpg")) if max(Image.open(p).size) > 600]
    if not large:
        pytest.skip("no full-size originals in the sample")
    dataset = FileImageDataset(["benign", "malignant"], [p.stem for p in large], [0] * len(large),
                               large, name="isic originals")
    cached = cached_decode(dataset, image_size=224, cache_dir=None).float()
    plain = torch.stack([plain_decode(p, 224) for p in large]).float()
    per_image_mean = (cached - plain).abs().mean(dim=(1, 2, 3))
    assert per_image_mean.max() < 1.5  # grey levels out of 255


def test_batched_augmentation_equals_torchvision_per_image(tmp_path):
    """Trainer's data path (gather, batched rotation + flips, normalise) against torchvision's
    per-image transforms with the same angles and flips (and torchvision's black fill)."""
    paths = write_images(tmp_path / "images", [(90, 70), (64, 64), (120, 50), (33, 80)])
    images = cached_decode(PILImages(paths), image_size=48, cache_dir=None)
    labels = torch.tensor([0, 1, 0, 1])
    model = build_model("test_efficientnet", num_classes=2, components=2, hidden=8)
    sampler = BalancedPairSampler(labels.tolist(), num_streams=2, batch_size=4, seed=3)
    trainer = Trainer(model, SynergicLoss(3.0), sampler, images, labels, mean=MEAN, std=STD,
                      iterations=1, augmentation=Augmentation(fill="zeros"), seed=3, device="cpu")
    indices = torch.tensor([3, 0, 2, 2])
    step, stream = 5, 1
    batched = trainer._stream_batch(indices, step, stream)

    generator = step_generator(3, step, stream + 1)  # the numbers augment_batch draws, in order
    angles = (torch.rand(4, generator=generator, dtype=torch.float64) * 2 - 1) * 180.0
    hflips = torch.rand(4, generator=generator) < 0.5
    vflips = torch.rand(4, generator=generator) < 0.5
    for b, index in enumerate(indices.tolist()):
        image = plain_decode(paths[index], 48).float() / 255.0
        image = TF.rotate(image, float(angles[b]), interpolation=InterpolationMode.BILINEAR)
        if hflips[b]:
            image = TF.horizontal_flip(image)
        if vflips[b]:
            image = TF.vertical_flip(image)
        image = TF.normalize(image, list(MEAN), list(STD))
        torch.testing.assert_close(batched[b], image, atol=5e-5, rtol=0)


@pytest.mark.parametrize("components, augment, fuse", [(2, True, False), (3, False, False), (2, False, True)])
def test_trainer_step_equals_a_handwritten_sdl_step(components, augment, fuse):
    bench = load_bench()
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 3, 32, 32), generator=generator, dtype=torch.uint8)
    labels = torch.tensor([0, 1] * 12)
    torch.manual_seed(0)
    model = build_model("test_efficientnet", num_classes=2, components=components, hidden=16)
    reference = copy.deepcopy(model)
    sampler = BalancedPairSampler(labels.tolist(), num_streams=components, batch_size=6, seed=1)
    trainer = Trainer(
        model, SynergicLoss(3.0), sampler, images, labels, mean=MEAN, std=STD, iterations=3,
        optimizer=default_optimizer(model, lr=0.05),
        # the handwritten step fills rotated-in corners with zeros, like torchvision
        augmentation=Augmentation(fill="zeros") if augment else None,
        seed=1, device="cpu", fuse_components=fuse,
    )
    assert trainer.fuse_components is fuse
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05, foreach=True)
    initial_head = model.heads["0-1"].output.weight.detach().clone()
    for step in range(3):
        terms = trainer.train_step(step)
        indices = sampler.sample(step)
        generators = [step_generator(1, step, k + 1) for k in range(components)] if augment else None
        loss = bench.handwritten_sdl_step(
            reference, optimizer, images, labels, indices, generators, mean=MEAN, std=STD,
            synergic_weight=3.0, lr=0.05 / (1 + 1e-4 * step),
        )
        # total = sum CE + sum BCE under the paper's rule; the reported objective weighs BCE by 3
        ce = sum(v for k, v in terms.items() if k.startswith("ce_"))
        bce = sum(v for k, v in terms.items() if k.startswith("synergic_"))
        torch.testing.assert_close(ce + bce, loss, rtol=1e-5, atol=1e-6)
    for (name, mine), theirs in zip(model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6, msg=name)
    # The reference really trained, so the comparison above is not between untouched weights.
    assert not torch.equal(initial_head, model.heads["0-1"].output.weight)


def test_batched_prediction_equals_each_component_on_normalised_images():
    torch.manual_seed(0)
    model = build_model("test_efficientnet", num_classes=3, components=2, hidden=8).eval()
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    logits = predict(model, images, mean=MEAN, std=STD, batch_size=4)
    normalised = (images.float() / 255.0 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(
        STD
    ).view(1, 3, 1, 1)
    with torch.no_grad():
        for k, component in enumerate(model.components):
            torch.testing.assert_close(logits[k], component(normalised).logits, rtol=1e-4, atol=1e-5)
