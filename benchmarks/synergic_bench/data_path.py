"""(a) The data path: decoding with PIL on every access, the decoded-image cache, and the batched
gather + augmentation of a training step."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from synergic_bench.measure import (
    IMAGENET_MEAN, IMAGENET_STD, ISIC_SAMPLE, PeakMemory, interleaved_timings,
)


def real_size_originals(folder: Path | None = None) -> list[Path]:
    """The full-size originals among the ISIC 2016 sample (the rest were shrunk to 512 px), or
    the JPEGs of ``folder`` (``--originals``)."""
    from PIL import Image

    candidates = sorted(folder.glob("**/*.jpg")) if folder else sorted(ISIC_SAMPLE.glob("*/*.jpg"))
    originals = []
    for path in candidates:
        with Image.open(path) as image:
            if max(image.size) > 600:
                originals.append(path)
    return originals


def make_real_size_images(folder: Path, count: int, seed: int = 0,
                          originals_folder: Path | None = None) -> list[Path]:
    """``count`` JPEGs of ISIC's real sizes (768 x 576 up to 3072 x 2304) in ``folder``.

    Each is one of the sample's full-size originals, mirrored or turned and slightly re-coloured
    so no two files are alike, saved at JPEG quality 95 like the originals; without the sample,
    smooth synthetic lesions of the same sizes.
    """
    import numpy as np
    from PIL import Image, ImageEnhance

    folder.mkdir(parents=True, exist_ok=True)
    originals = real_size_originals(originals_folder)
    rng = np.random.default_rng(seed)
    paths = []
    sizes = [(768, 576), (1022, 767), (919, 802), (2048, 1536), (3072, 2304), (576, 768)]
    for index in range(count):
        if originals:
            with Image.open(originals[index % len(originals)]) as source:
                image = source.convert("RGB")
            turn = [None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM,
                    Image.Transpose.ROTATE_180][(index // len(originals)) % 4]
            if turn is not None:
                image = image.transpose(turn)
            image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.9, 1.1)))
        else:
            width, height = sizes[index % len(sizes)]
            yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
            cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
            radius = rng.uniform(0.15, 0.3) * min(width, height)
            lesion = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2)))
            skin = np.array([200, 150, 130], np.float32)
            pixels = skin * (1 - 0.6 * lesion[..., None]) + rng.normal(0, 6, (height, width, 3))
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        path = folder / f"image_{index:04d}.jpg"
        image.save(path, quality=95)
        paths.append(path)
    return paths


def naive_transform(image_size: int, *, augment: bool):
    """The usual torchvision pipeline of a per-image ``Dataset.__getitem__``."""
    from torchvision import transforms as T

    steps = [T.Resize((image_size, image_size), interpolation=T.InterpolationMode.BICUBIC)]
    if augment:
        steps += [
            T.RandomRotation(180, interpolation=T.InterpolationMode.BILINEAR),
            T.RandomHorizontalFlip(),
            T.RandomVerticalFlip(),
        ]
    steps += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return T.Compose(steps)


def bench_data_path(config: dict[str, Any], device: torch.device, workdir: Path) -> dict[str, Any]:
    from PIL import Image

    from synergic.data.augment import augment_batch
    from synergic.data.cache import cached_decode
    from synergic.data.datasets.base import FileImageDataset

    size, count, batch = config["image_size"], config["data_images"], config["data_batch"]
    paths = make_real_size_images(workdir / "images", count, originals_folder=config.get("originals"))
    sizes = sorted({Image.open(p).size for p in paths})
    dataset = FileImageDataset(
        ["benign", "malignant"], [p.stem for p in paths], [i % 2 for i in range(count)], paths,
        name="real-size JPEGs",
    )
    rows: dict[str, dict[str, float]] = {}
    memory: dict[str, Any] = {}
    from_originals = bool(real_size_originals(config.get("originals")))

    def record(name: str, images: int, seconds: float, note: str) -> None:
        rows[name] = {"images_per_s": images / seconds, "images": images, "seconds": seconds,
                      "what": note}

    plain = naive_transform(size, augment=False)
    augmenting = naive_transform(size, augment=True)
    for path in paths:  # files in the page cache and lazy imports done: time decoding alone
        path.read_bytes()
    with Image.open(paths[0]) as image:
        augmenting(image.convert("RGB"))
    with PeakMemory(torch.device("cpu")) as peak:
        start = time.perf_counter()
        for path in paths:
            with Image.open(path) as image:
                plain(image.convert("RGB"))
        record("pil_decode_resize_per_access", count, time.perf_counter() - start,
               "PIL full decode + bicubic resize + ToTensor + Normalize, every access")
        start = time.perf_counter()
        for path in paths:
            with Image.open(path) as image:
                augmenting(image.convert("RGB"))
        record("pil_decode_resize_augment_per_access", count, time.perf_counter() - start,
               "the same with torchvision RandomRotation and flips per image")
    memory["per_access"] = peak.result

    cache_dir = workdir / "cache"
    with PeakMemory(torch.device("cpu")) as peak:
        start = time.perf_counter()
        cached = cached_decode(dataset, image_size=size, cache_dir=cache_dir)
        record("cache_build_once", count, time.perf_counter() - start,
               "first run: decode (JPEG draft scaling) + resize every image once, write the cache")
    memory["cache_build"] = peak.result
    with PeakMemory(torch.device("cpu")) as peak:
        start = time.perf_counter()
        again = cached_decode(dataset, image_size=size, cache_dir=cache_dir)
        record("cache_read", count, time.perf_counter() - start,
               "later runs: the whole decoded set read back from the cache file")
    memory["cache_read"] = peak.result
    assert torch.equal(cached, again)

    # Per-access reads of the cache with per-image torchvision augmentation, as a DataLoader over
    # the cached tensor would do: isolates the cache from the batched augmentation.
    per_image = naive_transform(size, augment=True).transforms[1:4]
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    reps = max(1, (4 * batch) // count)
    start = time.perf_counter()
    for _ in range(reps):
        for index in range(count):
            image = cached[index].float().div(255)
            for transform in per_image:
                image = transform(image)
            (image - mean) / std
    record("cache_per_access_augment", reps * count, time.perf_counter() - start,
           "cached uint8 image + per-image torchvision rotation/flips + normalise (CPU)")

    # Batched: what Trainer.train_step does with the cache, per batch of `batch` images.
    pool = cached.repeat(max(1, math.ceil(4 * batch / count)), 1, 1, 1)
    targets = [torch.device("cpu")] + ([device] if device.type == "cuda" else [])
    for target in targets:
        resident = pool.to(target)
        mean_t = torch.tensor(IMAGENET_MEAN, device=target).view(1, 3, 1, 1)
        std_t = torch.tensor(IMAGENET_STD, device=target).view(1, 3, 1, 1)

        def batched_step(step: int) -> torch.Tensor:
            generator = torch.Generator().manual_seed(step)
            indices = torch.randint(len(resident), (batch,), generator=generator)
            images = resident[indices.to(target, non_blocking=True)]
            images = augment_batch(images, generator=generator)
            return (images - mean_t) / std_t

        iterations = config["data_batches"] * (20 if target.type == "cuda" else 1)
        with PeakMemory(target) as peak:
            times = interleaved_timings({"b": batched_step}, device=target, warmup=2,
                                        rounds=1, steps_per_round=iterations)
        record(f"batched_gather_augment_{target.type}", iterations * batch,
               times["b"][0] * iterations,
               f"gather + batched rotation/flips + normalise on the {target.type}, "
               f"batches of {batch}" + (" (images resident on the GPU)" if target.type == "cuda" else ""))
        memory[f"batched_{target.type}"] = peak.result

    base = rows["pil_decode_resize_augment_per_access"]["images_per_s"]
    speedups = {name: row["images_per_s"] / base for name, row in rows.items()}
    return {
        "image_size": size,
        "source_images": count,
        "source": "ISIC 2016 originals, mirrored/turned and re-coloured" if from_originals
        else "synthetic lesions (no originals found)",
        "source_sizes": [f"{w}x{h}" for w, h in sizes],
        "rows": rows,
        "speedup_vs_pil_per_access": speedups,
        "memory": memory,
    }
