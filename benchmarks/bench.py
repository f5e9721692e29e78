"""Benchmarks of synergic's data path and training step, on the machine where it runs.

    python benchmarks/bench.py --quick                       # CPU, a few minutes
    python benchmarks/bench.py --device cuda --output benchmarks/results/h100.json

It reports (see docs/benchmarks.md for what each figure means):

(a) images/s of the data path on real-size dermoscopy JPEGs: decoding and resizing with PIL on
    every access (the usual ``Dataset.__getitem__``), synergic's decoded-image cache (built once,
    read back from disk), and the batched path of a training step (gather from the cached uint8
    tensor, rotate and flip the batch, normalise) on the CPU and, when there is one, the GPU;
(b) ``Trainer.train_step`` against a minimal hand-written SDL step (:func:`handwritten_sdl_step`)
    for the same model and batch: the framework's overhead;
(c) SDL^n for n = 1..4, the time of a step relative to n = 1;
(d) peak memory of each part (CPU resident set size, or ``torch.cuda.max_memory_allocated``);
(e) on a GPU, the paper's recipe (ResNet-50 x 2, 32 pairs, 224 x 224, bf16, channels_last):
    iterations/s, how busy the GPU is, the step captured as a CUDA graph, ``torch.compile``, and the
    projected time of 100,000 iterations against the arithmetic floor.

Everything is written to one JSON file with the machine's description. Timings interleave the
variants they compare (A, B, A, B, ...) and report medians, so that a load that comes and goes on a
shared machine affects both alike.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing synergic
    sys.path.insert(0, str(REPO))

ISIC_SAMPLE = REPO.parent / "shared" / "data" / "isic2016-sample"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAPER_ITERATIONS = 100_000
# Dense bf16 tensor-core peak of an H100/H200 SXM (datasheet, without sparsity).
HOPPER_BF16_PEAK_FLOPS = 989e12


# --- the machine -------------------------------------------------------------------------------


def machine_description(device: torch.device) -> dict[str, Any]:
    """CPU model, cores, load, Python/torch versions and the GPU, for the results file."""
    cpu_model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu_model,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": _total_memory_gib(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
    }
    try:
        import timm

        info["timm"] = timm.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 1024**3, 1),
            gpu_multiprocessors=props.multi_processor_count,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def _total_memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak memory of a block: the process's resident set (reset through /proc where Linux
    allows it, else the peak since the start) and, on a GPU, ``max_memory_allocated``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.result: dict[str, float | str] = {}

    def __enter__(self) -> PeakMemory:
        self._reset_ok = False
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
            self._reset_ok = True
        except OSError:
            pass
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc) -> None:
        rss = _vm_hwm_mib()
        if rss is None or not self._reset_ok:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            self.result["cpu_rss_note"] = "peak since the process started"
        self.result["cpu_peak_rss_mib"] = round(rss, 1)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.result["gpu_max_allocated_mib"] = round(
                torch.cuda.max_memory_allocated(self.device) / 1024**2, 1
            )


def _vm_hwm_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_timings(
    variants: dict[str, Callable[[int], Any]],
    *,
    device: torch.device,
    warmup: int,
    rounds: int,
    steps_per_round: int = 1,
) -> dict[str, list[float]]:
    """Seconds per call of each variant, measured round-robin: every round runs each variant for
    ``steps_per_round`` calls (the device drained before and after) and records the mean. Odd
    rounds run the variants in reverse order, so that none always follows the same one."""
    step = 0
    for _ in range(warmup):
        for fn in variants.values():
            fn(step)
        step += 1
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(rounds):
        order = list(variants.items())
        for name, fn in order if index % 2 == 0 else reversed(order):
            synchronize(device)
            start = time.perf_counter()
            for k in range(steps_per_round):
                fn(step + k)
            synchronize(device)
            times[name].append((time.perf_counter() - start) / steps_per_round)
        step += steps_per_round
    return times


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of the ratio of two variants timed in the same round: steadier than the
    ratio of medians when the machine's load changes from round to round."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def summarise(seconds: list[float]) -> dict[str, float]:
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "samples": len(seconds),
        "all_s": [round(value, 6) for value in seconds],
    }


# --- (a) the data path -------------------------------------------------------------------------


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


# --- (b) a hand-written SDL step ---------------------------------------------------------------


def handwritten_sdl_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    indices: torch.Tensor,
    generators: Sequence[torch.Generator] | None,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    synergic_weight: float = 3.0,
    rotation: float = 180.0,
    lr: float | None = None,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """One SDL step written out in plain PyTorch, with no framework code: the reference that
    ``Trainer.train_step`` is compared with for both speed and results.

    ``images``: uint8 ``[N, 3, H, W]`` (on the device or not), ``labels``: ``[N]`` on the device,
    ``indices``: ``[n, B]`` on the CPU (stream k feeds component k), ``generators``: one CPU
    generator per stream for rotation and flips (None: no augmentation). The paper's gradient rule:
    each head learns from its own BCE, each component from its CE plus ``synergic_weight`` times
    the synergic error that flows back into it. Returns the loss (on the device, not synchronised).
    """
    device = labels.device
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    on_device = indices.to(device, non_blocking=True)
    # torch.tensor(..., device=cuda) would wait for the GPU; a non-blocking copy does not.
    mean_t = torch.tensor(mean).view(1, 3, 1, 1).to(device, non_blocking=True)
    std_t = torch.tensor(std).view(1, 3, 1, 1).to(device, non_blocking=True)
    streams = []
    for k in range(len(indices)):
        batch = images[on_device[k].to(images.device)].to(device, non_blocking=True)
        batch = batch.to(torch.float32).div_(255.0)
        if generators is not None:
            size = len(indices[k])
            angles = (torch.rand(size, generator=generators[k], dtype=torch.float64) * 2 - 1) * rotation
            hflip = (torch.rand(size, generator=generators[k]) < 0.5).to(device, non_blocking=True)
            vflip = (torch.rand(size, generator=generators[k]) < 0.5).to(device, non_blocking=True)
            height, width = batch.shape[-2:]
            radians = torch.deg2rad(angles)
            cos, sin = torch.cos(radians), torch.sin(radians)
            theta = torch.stack(
                [cos, -sin * (height / width), torch.zeros_like(cos),
                 sin * (width / height), cos, torch.zeros_like(cos)], dim=1,
            ).view(-1, 2, 3).to(device, torch.float32, non_blocking=True)
            grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
            batch = F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            batch = torch.where(hflip.view(-1, 1, 1, 1), batch.flip(-1), batch)
            batch = torch.where(vflip.view(-1, 1, 1, 1), batch.flip(-2), batch)
        batch = (batch - mean_t) / std_t
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        streams.append(batch)
    targets = [labels[on_device[k]] for k in range(len(indices))]

    def scaled(features: torch.Tensor) -> torch.Tensor:
        if synergic_weight == 1.0:
            return features
        features = features.view_as(features)
        features.register_hook(lambda grad: grad * synergic_weight)
        return features

    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        features, logits = [], []
        for component, batch in zip(model.components, streams):
            f = component.embedding(component.backbone(batch))
            logits.append(component.classifier(component.activation(f)))
            features.append(scaled(f))
        pair_logits = {
            (i, j): model.heads[f"{i}-{j}"](torch.cat([features[i], features[j]], dim=1))
            for i in range(len(features)) for j in range(i + 1, len(features))
        }
    loss = sum(F.cross_entropy(z.float(), y) for z, y in zip(logits, targets))
    for (i, j), z in pair_logits.items():
        same = (targets[i] == targets[j]).to(torch.float32)
        loss = loss + F.binary_cross_entropy_with_logits(z.float(), same)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def plain_sgd(model: torch.nn.Module, lr: float = 1e-4) -> torch.optim.SGD:
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs = {"fused": True} if params[0].is_cuda else {"foreach": True}
    return torch.optim.SGD(params, lr=lr, **kwargs)


def synthetic_training_set(count: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 images and labels (20% positive, as in ISIC 2016): speed does not depend on
    the pixels."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 3, size, size), generator=generator, dtype=torch.uint8)
    labels = (torch.rand(count, generator=generator) < 0.2).long()
    labels[:2] = torch.tensor([0, 1])
    return images, labels


def make_trainer(config: dict[str, Any], device: torch.device, components: int, *,
                 compile: bool = False):
    """A synergic Trainer for the configured backbone, with the paper's loss and sampler."""
    from synergic import BalancedPairSampler, SynergicLoss, Trainer, build_model
    from synergic.training.trainer import Augmentation

    images, labels = synthetic_training_set(config["train_images"], config["train_size"])
    torch.manual_seed(0)
    model = build_model(config["backbone"], num_classes=2, components=components)
    sampler = BalancedPairSampler(labels.tolist(), num_streams=components,
                                  batch_size=config["batch"], seed=0)
    return Trainer(
        model, SynergicLoss(3.0), sampler, images, labels, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        iterations=10**9, augmentation=Augmentation(), device=device,
        precision=config["precision"], channels_last=config["channels_last"], compile=compile,
        log_every=10**9,
    )


def handwritten_from(trainer, config: dict[str, Any]) -> Callable[[int], torch.Tensor]:
    """The hand-written step on a copy of ``trainer``'s model and data, with its own random pairs."""
    model = copy.deepcopy(trainer.model)
    optimizer = plain_sgd(model)
    images, labels = trainer.images, trainer.labels_on_device
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config["precision"])
    n, batch = model.num_components, config["batch"]
    model.train()

    def step(index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(index)
        indices = torch.randint(len(images), (n, batch), generator=generator)
        generators = [torch.Generator().manual_seed(index * 16 + k + 1) for k in range(n)]
        return handwritten_sdl_step(
            model, optimizer, images, labels, indices, generators, mean=IMAGENET_MEAN,
            std=IMAGENET_STD, lr=1e-4 / (1 + 1e-4 * index), dtype=dtype,
            channels_last=config["channels_last"],
        )

    return step


def bench_overhead(config: dict[str, Any], device: torch.device) -> dict[str, Any]:
    with PeakMemory(device) as peak:
        trainer = make_trainer(config, device, components=2)
        variants = {"synergic": trainer.train_step, "handwritten": handwritten_from(trainer, config)}
        times = interleaved_timings(variants, device=device, warmup=config["warmup"],
                                    rounds=config["rounds"], steps_per_round=config["steps_per_round"])
    result = {
        "backbone": config["backbone"], "image_size": config["train_size"],
        "pairs_per_step": config["batch"], "precision": config["precision"],
        "channels_last": config["channels_last"],
        "synergic": summarise(times["synergic"]), "handwritten": summarise(times["handwritten"]),
        "ratio_of_medians": statistics.median(times["synergic"]) / statistics.median(times["handwritten"]),
        "median_of_round_ratios": paired_ratio(times["synergic"], times["handwritten"]),
        "memory": peak.result,
    }
    result["overhead_percent"] = 100 * (result["median_of_round_ratios"] - 1)
    return result


# --- (c) SDL^n ---------------------------------------------------------------------------------


def bench_components(config: dict[str, Any], device: torch.device) -> dict[str, Any]:
    trainers, memory = {}, {}
    for n in config["components"]:
        with PeakMemory(device) as peak:
            trainers[n] = make_trainer(config, device, components=n)
            for step in range(2):
                trainers[n].train_step(step)
        memory[n] = peak.result
    times = interleaved_timings(
        {str(n): t.train_step for n, t in trainers.items()}, device=device,
        warmup=config["warmup"], rounds=config["rounds"], steps_per_round=config["steps_per_round"],
    )
    base = statistics.median(times["1"])
    rows = {}
    for n in config["components"]:
        relative = paired_ratio(times[str(n)], times["1"])
        rows[str(n)] = {**summarise(times[str(n)]), "relative_to_sdl1": relative,
                        "ratio_of_medians": statistics.median(times[str(n)]) / base,
                        "per_component_relative": relative / n, "memory": memory[n]}
    return {"backbone": config["backbone"], "image_size": config["train_size"],
            "pairs_per_step": config["batch"], "precision": config["precision"], "rows": rows}


# --- (e) the paper's recipe on a GPU -----------------------------------------------------------


def count_step_flops(backbone: str, batch: int, size: int, components: int = 2) -> float:
    """Floating-point operations of one SDL step (forward + backward), counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    from synergic import SynergicLoss, build_model

    with torch.device("meta"):
        model = build_model(backbone, num_classes=2, components=components)
        streams = [torch.randn(batch, 3, size, size) for _ in range(components)]
        labels = [torch.randint(0, 2, (batch,)) for _ in range(components)]
    counter = FlopCounterMode(display=False)
    with counter:
        SynergicLoss(3.0)(model(streams, synergic_grad_scale=3.0), labels).total.backward()
    return float(counter.get_total_flops())


def measured_matmul_flops(device: torch.device) -> float:
    """bf16 matrix-product rate of this GPU (8192^3, median of 10 after warm-up)."""
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return 2 * 8192**3 / statistics.median(times)


def gpu_busy_fraction(step: Callable[[int], Any], device: torch.device, steps: int = 10,
                      first_step: int = 10_000) -> dict[str, float]:
    """Share of the wall time during which the GPU runs a kernel or copy (the union of their
    intervals, from the profiler), over ``steps`` steps; the profiler slows the host a little, so
    this is a lower bound."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    synchronize(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for k in range(steps):
            step(first_step + k)
        synchronize(device)
        wall = time.perf_counter() - start
    intervals = sorted(
        (event.start_ns(), event.start_ns() + event.duration_ns())
        for event in prof.profiler.kineto_results.events()
        if event.device_type() == DeviceType.CUDA
    )
    busy, current_start, current_end = 0, None, None
    for begin, end in intervals:
        if current_end is None or begin > current_end:
            if current_end is not None:
                busy += current_end - current_start
            current_start, current_end = begin, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        busy += current_end - current_start
    return {"busy_fraction": busy / 1e9 / wall, "gpu_busy_s_per_step": busy / 1e9 / steps,
            "wall_s_per_step_under_profiler": wall / steps}


def count_synchronisations(step: Callable[[int], Any], first_step: int = 20_000) -> int:
    """How many host-device synchronisations one step makes (torch's sync debug mode)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step(first_step)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@contextmanager
def augment_transfers_nonblocking():
    """Inside: ``rotate_and_flip`` receives its random numbers already on the device, copied with
    ``non_blocking=True``, so the augmentation does not wait for the GPU. Measures what that
    change to ``synergic/data/augment.py`` would give."""
    from synergic.data import augment

    original = augment.rotate_and_flip

    def patched(images, angles, hflips, vflips):
        def move(values):
            return None if values is None else values.to(images.device, non_blocking=True)

        return original(images, move(angles), move(hflips), move(vflips))

    augment.rotate_and_flip = patched
    try:
        yield
    finally:
        augment.rotate_and_flip = original


def cuda_graph_step(trainer, config: dict[str, Any]) -> Callable[[int], None]:
    """The hand-written step (data path included) captured once as a CUDA graph and replayed:
    no host overhead at all, so its time is what the GPU itself needs for a step. Indices and
    augmentation draws go in through static buffers; the learning rate is fixed at capture."""
    device = trainer.device
    model = copy.deepcopy(trainer.model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                foreach=True)
    n, batch = model.num_components, config["batch"]
    images, labels = trainer.images, trainer.labels_on_device
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config["precision"])
    static_indices = torch.zeros(n, batch, dtype=torch.long, device=device)
    static_theta = torch.zeros(n, batch, 2, 3, device=device)
    static_flips = torch.zeros(n, 2, batch, dtype=torch.bool, device=device)
    mean_t = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    size = images.shape[-1]

    def load_inputs(index: int) -> None:
        generator = torch.Generator().manual_seed(index)
        static_indices.copy_(torch.randint(len(images), (n, batch), generator=generator), non_blocking=True)
        radians = torch.deg2rad((torch.rand(n, batch, generator=generator) * 2 - 1) * 180)
        cos, sin = torch.cos(radians), torch.sin(radians)
        zero = torch.zeros_like(cos)
        theta = torch.stack([cos, -sin, zero, sin, cos, zero], dim=-1).view(n, batch, 2, 3)
        static_theta.copy_(theta, non_blocking=True)
        static_flips.copy_(torch.rand(n, 2, batch, generator=generator) < 0.5, non_blocking=True)

    def body() -> None:
        losses = []
        features = []
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None, cache_enabled=False):
            for k, component in enumerate(model.components):
                x = images[static_indices[k]].float().div_(255.0)
                grid = F.affine_grid(static_theta[k], [batch, 3, size, size], align_corners=False)
                x = F.grid_sample(x, grid, mode="bilinear", align_corners=False)
                x = torch.where(static_flips[k, 0].view(-1, 1, 1, 1), x.flip(-1), x)
                x = torch.where(static_flips[k, 1].view(-1, 1, 1, 1), x.flip(-2), x)
                x = ((x - mean_t) / std_t).contiguous(memory_format=torch.channels_last)
                f = component.embedding(component.backbone(x))
                losses.append(F.cross_entropy(component.classifier(f).float(), labels[static_indices[k]]))
                features.append(f)
            for i in range(n):
                for j in range(i + 1, n):
                    z = model.heads[f"{i}-{j}"](torch.cat([features[i], features[j]], dim=1))
                    same = (labels[static_indices[i]] == labels[static_indices[j]]).float()
                    losses.append(F.binary_cross_entropy_with_logits(z.float(), same))
        loss = torch.stack(losses).sum()
        loss.backward()
        optimizer.step()

    model.train()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for warm in range(3):
            load_inputs(warm)
            optimizer.zero_grad(set_to_none=True)
            body()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        body()

    def replay(index: int) -> None:
        load_inputs(index)
        graph.replay()

    return replay


def bench_recipe(config: dict[str, Any], device: torch.device, output_dir: Path,
                 compile_budget_s: float, quick: bool) -> dict[str, Any]:
    """The paper's recipe on this GPU: eager, CUDA graph and (time allowing) torch.compile."""
    result: dict[str, Any] = {
        "backbone": config["backbone"], "pairs_per_step": config["batch"],
        "image_size": config["train_size"], "precision": config["precision"],
        "channels_last": config["channels_last"],
    }
    flops = count_step_flops(config["backbone"], config["batch"], config["train_size"])
    result["flops_per_step"] = flops
    result["flops_100k_iterations"] = flops * PAPER_ITERATIONS
    result["floor_100k_s_at_989_tflops"] = flops * PAPER_ITERATIONS / HOPPER_BF16_PEAK_FLOPS
    try:
        measured = measured_matmul_flops(device)
        result["measured_bf16_matmul_tflops"] = measured / 1e12
        result["floor_100k_s_at_measured_matmul"] = flops * PAPER_ITERATIONS / measured
    except Exception as error:  # noqa: BLE001 - report and go on
        result["measured_bf16_matmul_error"] = repr(error)

    def project(seconds_per_step: float) -> dict[str, float]:
        return {
            "seconds_per_step": seconds_per_step,
            "iterations_per_s": 1 / seconds_per_step,
            "images_per_s": 2 * config["batch"] / seconds_per_step,
            "projected_100k_minutes": seconds_per_step * PAPER_ITERATIONS / 60,
            "achieved_tflops": flops / seconds_per_step / 1e12,
            "fraction_of_989_tflops": flops / seconds_per_step / HOPPER_BF16_PEAK_FLOPS,
        }

    with PeakMemory(device) as peak:
        trainer = make_trainer(config, device, components=2)
        trainer.train_step(0)
    result["memory_eager"] = peak.result

    def nonblocking_augment_step(step: int):
        with augment_transfers_nonblocking():
            return trainer.train_step(step)

    variants = {"synergic_eager": trainer.train_step, "handwritten_eager": handwritten_from(trainer, config),
                "synergic_eager_nonblocking_augment": nonblocking_augment_step}
    times = interleaved_timings(variants, device=device, warmup=3, rounds=3 if quick else 6,
                                steps_per_round=10 if quick else 20)
    # Last, so that a failed capture cannot spoil the eager figures.
    try:
        graph_step = cuda_graph_step(trainer, config)
        times.update(interleaved_timings({"cuda_graph": graph_step}, device=device, warmup=3,
                                         rounds=3, steps_per_round=10 if quick else 20))
    except Exception as error:  # noqa: BLE001
        result["cuda_graph_error"] = repr(error)[:500]
    for name, seconds in times.items():
        result[name] = {**summarise(seconds), **project(statistics.median(seconds))}
    for name in ("synergic_eager", "handwritten_eager", "synergic_eager_nonblocking_augment"):
        try:
            result[name]["synchronisations_per_step"] = count_synchronisations(variants[name])
        except Exception as error:  # noqa: BLE001
            result[name]["synchronisations_error"] = repr(error)[:300]
        try:
            result[name].update(gpu_busy_fraction(variants[name], device))
        except Exception as error:  # noqa: BLE001
            result[name]["busy_fraction_error"] = repr(error)[:300]
    if "cuda_graph" in result:
        # The graph's step time is what the GPU needs; eager's share of it is how busy it keeps it.
        gpu_time = result["cuda_graph"]["seconds_per_step"]
        for name in ("synergic_eager", "handwritten_eager", "synergic_eager_nonblocking_augment"):
            result[name]["graph_time_over_step_time"] = gpu_time / result[name]["seconds_per_step"]
    del trainer, variants
    graph_step = None
    torch.cuda.empty_cache()

    if compile_budget_s > 30:
        result["synergic_compile"] = run_compile_subprocess(config, output_dir, compile_budget_s)
        if "seconds_per_step" in result["synergic_compile"]:
            result["synergic_compile"].update(project(result["synergic_compile"]["seconds_per_step"]))
    else:
        result["synergic_compile"] = {"skipped": f"only {compile_budget_s:.0f} s left"}
    return result


def run_compile_subprocess(config: dict[str, Any], output_dir: Path, budget_s: float) -> dict[str, Any]:
    """``Trainer(compile=True)`` in a child process, so that a slow compilation can be cut off."""
    target = output_dir / "compile_result.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--compile-child", str(target),
               "--device", "cuda"]
    try:
        subprocess.run(command, timeout=budget_s, check=False)
    except subprocess.TimeoutExpired:
        return {"skipped": f"torch.compile did not finish within {budget_s:.0f} s"}
    if not target.exists():
        return {"error": "the compile child wrote no result"}
    return json.loads(target.read_text())


def compile_child(target: Path, device: torch.device) -> None:
    config = configuration("cuda", quick=True)["recipe"]
    torch.backends.cudnn.benchmark = True
    result: dict[str, Any] = {}
    try:
        start = time.perf_counter()
        trainer = make_trainer(config, device, components=2, compile=True)
        trainer.train_step(0)
        synchronize(device)
        result["first_step_s_including_compilation"] = time.perf_counter() - start
        times = interleaved_timings({"compiled": trainer.train_step}, device=device, warmup=3,
                                    rounds=3, steps_per_round=10)
        result.update(summarise(times["compiled"]))
        result["seconds_per_step"] = statistics.median(times["compiled"])
    except Exception as error:  # noqa: BLE001
        result["error"] = repr(error)[:800]
    target.write_text(json.dumps(result, indent=2))


# --- the command -------------------------------------------------------------------------------


def configuration(device_type: str, *, quick: bool) -> dict[str, Any]:
    """What each part measures, per device and mode."""
    if device_type == "cuda":
        model = {"backbone": "resnet50", "train_size": 224, "batch": 32, "precision": "bf16",
                 "channels_last": True, "train_images": 900}
        return {
            "data": {"image_size": 224, "data_images": 24 if quick else 48, "data_batch": 32,
                     "data_batches": 4},
            "overhead": {**model, "warmup": 3, "rounds": 3 if quick else 6,
                         "steps_per_round": 10 if quick else 20},
            "components": {**model, "components": [1, 2, 3, 4], "warmup": 2,
                           "rounds": 3 if quick else 5, "steps_per_round": 5 if quick else 10},
            "recipe": model,
        }
    if quick:
        model = {"backbone": "resnet10t", "train_size": 224, "batch": 4, "precision": "fp32",
                 "channels_last": False, "train_images": 64}
        return {
            "data": {"image_size": 224, "data_images": 24, "data_batch": 32, "data_batches": 4},
            "overhead": {**model, "warmup": 2, "rounds": 11, "steps_per_round": 1},
            "components": {**model, "components": [1, 2, 3, 4], "warmup": 1, "rounds": 5,
                           "steps_per_round": 1},
        }
    model = {"backbone": "resnet18", "train_size": 224, "batch": 8, "precision": "fp32",
             "channels_last": False, "train_images": 128}
    return {
        "data": {"image_size": 224, "data_images": 96, "data_batch": 32, "data_batches": 8},
        "overhead": {**model, "warmup": 2, "rounds": 10, "steps_per_round": 1},
        "components": {**model, "components": [1, 2, 3, 4], "warmup": 1, "rounds": 5,
                       "steps_per_round": 1},
    }


def targets_met(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, checked against the figures measured."""
    met: dict[str, Any] = {}
    data = results.get("data_path")
    if data:
        ratio = (data["rows"]["batched_gather_augment_cpu"]["images_per_s"]
                 / data["rows"]["pil_decode_resize_augment_per_access"]["images_per_s"])
        met["cache_path_vs_per_access_decode"] = {"value": ratio, "target": ">= 10", "met": ratio >= 10}
    overhead = results.get("overhead")
    if overhead:
        value = overhead["median_of_round_ratios"]
        met["synergic_step_vs_handwritten"] = {"value": value, "target": "<= 1.03", "met": value <= 1.03}
    components = results.get("components")
    if components:
        worst = max(row["relative_to_sdl1"] / int(n) for n, row in components["rows"].items())
        met["sdl_n_over_n_times_sdl1_worst"] = {"value": worst, "target": "<= 1", "met": worst <= 1.0}
    recipe = results.get("recipe")
    if recipe and "synergic_eager" in recipe:
        best = min(
            (recipe[k]["projected_100k_minutes"], k) for k in ("synergic_eager", "synergic_compile")
            if isinstance(recipe.get(k), dict) and "projected_100k_minutes" in recipe[k]
        )
        met["paper_recipe_100k_minutes"] = {"value": best[0], "variant": best[1], "target": "< 15",
                                            "met": best[0] < 15}
        busy = recipe["synergic_eager"].get("graph_time_over_step_time")
        if busy is not None:
            met["gpu_busy_fraction"] = {"value": busy, "target": "> 0.9", "met": busy > 0.9}
    return met


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller models on CPU")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--output", type=Path, help="results JSON (default benchmarks/results/<device>[-quick].json)")
    parser.add_argument("--only", default="data,overhead,components,recipe",
                        help="comma-separated parts: data, overhead, components, recipe")
    parser.add_argument("--time-budget", type=float, default=600.0,
                        help="seconds; torch.compile is tried only with time left (GPU)")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (default: torch's); 1 is steadier on a busy, shared machine")
    parser.add_argument("--originals", type=Path,
                        help="folder of real-size JPEGs for (a) (default: the ISIC 2016 sample's)")
    parser.add_argument("--compile-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    started = time.perf_counter()
    device_name = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device_name)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA GPU")
    if args.compile_child:
        compile_child(args.compile_child, device)
        return 0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    config = configuration(device.type, quick=args.quick)
    config["data"]["originals"] = args.originals
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    output = args.output or REPO / "benchmarks" / "results" / f"{device.type}{'-quick' if args.quick else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine_description(device),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        "config": config,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }

    def save() -> None:
        try:
            results["targets"] = targets_met(results)
        except (KeyError, TypeError, ValueError) as error:
            results["targets"] = {"error": repr(error)}
        results["total_seconds"] = time.perf_counter() - started
        output.write_text(json.dumps(results, indent=2, default=str))

    def part(name: str, fn: Callable[[], dict[str, Any]]) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {name} ...", flush=True)
        try:
            results[name] = fn()
        except Exception as error:  # noqa: BLE001 - one failing part must not lose the others
            import traceback

            traceback.print_exc()
            results[name] = {"error": repr(error)[:800]}
        save()

    with tempfile.TemporaryDirectory(prefix="synergic-bench-") as workdir:
        if "data" in parts:
            part("data_path", lambda: bench_data_path(config["data"], device, Path(workdir)))
        if "overhead" in parts:
            part("overhead", lambda: bench_overhead(config["overhead"], device))
        if "components" in parts:
            part("components", lambda: bench_components(config["components"], device))
        if "recipe" in parts and device.type == "cuda":
            def recipe() -> dict[str, Any]:
                left = args.time_budget - (time.perf_counter() - started)
                return bench_recipe(config["recipe"], device, output.parent, left - 60, args.quick)

            part("recipe", recipe)
    save()
    print(format_summary(results))
    print(f"written to {output}")
    return 0


def format_summary(results: dict[str, Any]) -> str:
    """A short text table of the main figures."""
    lines = [f"machine: {results['machine'].get('cpu')} x{results['machine'].get('cpu_cores')}"
             f"{', ' + results['machine']['gpu'] if 'gpu' in results['machine'] else ''}, "
             f"torch {results['machine']['torch']}"]
    data = results.get("data_path", {})
    for name, row in data.get("rows", {}).items():
        lines.append(f"  (a) {name:40s} {row['images_per_s']:10.1f} images/s  "
                     f"x{data['speedup_vs_pil_per_access'][name]:.1f}")
    overhead = results.get("overhead", {})
    if "synergic" in overhead:
        lines.append(f"  (b) synergic {overhead['synergic']['median_s'] * 1000:.1f} ms/step, "
                     f"hand-written {overhead['handwritten']['median_s'] * 1000:.1f} ms/step: "
                     f"{overhead['overhead_percent']:+.1f}%")
    for n, row in results.get("components", {}).get("rows", {}).items():
        lines.append(f"  (c) SDL^{n}: {row['median_s'] * 1000:.1f} ms/step = "
                     f"{row['relative_to_sdl1']:.2f} x SDL^1")
    recipe = results.get("recipe", {})
    for name in ("synergic_eager", "synergic_eager_nonblocking_augment", "handwritten_eager",
                 "cuda_graph", "synergic_compile"):
        row = recipe.get(name)
        if isinstance(row, dict) and "iterations_per_s" in row:
            extra = "".join(
                f", {label} {row[key]:.2f}" for key, label in (
                    ("graph_time_over_step_time", "graph/step"), ("busy_fraction", "busy"),
                    ("synchronisations_per_step", "syncs/step"))
                if isinstance(row.get(key), (int, float))
            )
            lines.append(f"  (e) {name:34s} {row['iterations_per_s']:6.1f} it/s, 100k iterations in "
                         f"{row['projected_100k_minutes']:.1f} min, {row['achieved_tflops']:.0f} TFLOP/s"
                         f"{extra}")
        elif isinstance(row, dict):
            lines.append(f"  (e) {name}: {row}")
    if "floor_100k_s_at_989_tflops" in recipe:
        lines.append(f"  (e) arithmetic floor of 100k iterations: "
                     f"{recipe['floor_100k_s_at_989_tflops'] / 60:.1f} min at 989 TFLOP/s")
    for name, target in results.get("targets", {}).items():
        lines.append(f"  target {name}: {target['value']:.3g} ({target['target']}) "
                     f"{'met' if target['met'] else 'NOT met'}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
