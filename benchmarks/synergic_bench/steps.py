"""(b) synergic's ``Trainer.train_step`` against a hand-written SDL step, (c) SDL^n for n = 1..4,
and the side-by-side of both with the arithmetic floor (FLOPs / measured peak)."""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from synergic_bench.measure import (
    IMAGENET_MEAN, IMAGENET_STD, PeakMemory, interleaved_timings, paired_ratio, summarise,
)


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
                 compile: bool = False, fuse_components: bool | str = "auto"):
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
        iterations=10**9, augmentation=Augmentation() if config.get("augment", True) else None,
        device=device, fuse_components=fuse_components,
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
        generators = ([torch.Generator().manual_seed(index * 16 + k + 1) for k in range(n)]
                      if config.get("augment", True) else None)
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


def count_step_flops(backbone: str, batch: int, size: int, components: int = 2) -> float:
    """Floating-point operations of one SDL step (forward + backward), counted on the meta device
    by ``torch.utils.flop_counter.FlopCounterMode``.

    The counter ignores ``groups`` in ``convolution_backward`` (torch 2.14): for depthwise
    convolutions (EfficientNet) it counts the backward as a dense convolution, 41 GFLOP where
    the forward is 1 (EfficientNet-Lite0, 16 images of 64 px). A convolution's backward is at most
    twice its forward (the input and weight gradients), so the count is capped there."""
    from torch.utils.flop_counter import FlopCounterMode

    from synergic import SynergicLoss, build_model

    with torch.device("meta"):
        model = build_model(backbone, num_classes=2, components=components)
        streams = [torch.randn(batch, 3, size, size) for _ in range(components)]
        labels = [torch.randint(0, 2, (batch,)) for _ in range(components)]
    counter = FlopCounterMode(display=False)
    with counter:
        SynergicLoss(3.0)(model(streams, synergic_grad_scale=3.0), labels).total.backward()
    counts = {str(op): flops for op, flops in counter.get_flop_counts()["Global"].items()}
    total = float(counter.get_total_flops())
    forward = counts.get("aten.convolution", 0)
    backward = counts.get("aten.convolution_backward", 0)
    return total - backward + min(backward, 2 * forward)


# --- side by side: synergic, hand-written, the arithmetic floor ---------------------------------


def measured_peak_flops(device: torch.device, dtype: torch.dtype = torch.float32,
                        size: int = 1024, repeats: int = 5) -> float:
    """This machine's matrix-product rate (``size``^3, best of ``repeats`` after a warm-up): the
    peak a step's FLOPs are divided by for the floor. The best, not the median, so that a shared
    machine's load lowers the floor's estimate of the peak as little as possible."""
    import time

    from synergic_bench.measure import synchronize

    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def bench_side_by_side(config: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """For each backbone and SDL^n (n = 1..4): ``Trainer.train_step``, the hand-written step and
    the floor (FLOPs of a step / this machine's measured matrix-product rate), timed
    interleaved. Augmentation off in both steps (``config["augment"]``), as the user-run part."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config["precision"], torch.float32)
    peak_before = measured_peak_flops(device, dtype)
    result: dict[str, Any] = {"image_size": config["train_size"], "pairs_per_step": config["batch"],
                              "precision": config["precision"], "channels_last": config["channels_last"],
                              "augment": config.get("augment", True), "backbones": {}}
    for backbone in config["backbones"]:
        rows = {}
        for n in config["components"]:
            model_config = {**config, "backbone": backbone}
            trainer = make_trainer(model_config, device, components=n,
                                   fuse_components=config.get("fuse_components", "auto"))
            variants = {"synergic": trainer.train_step, "handwritten": handwritten_from(trainer, model_config)}
            times = interleaved_timings(variants, device=device, warmup=config["warmup"],
                                        rounds=config["rounds"], steps_per_round=config["steps_per_round"])
            flops = count_step_flops(backbone, config["batch"], config["train_size"], components=n)
            if n > 1:
                stacking = parameter_stacking_cost(backbone, n, device)
            rows[str(n)] = {
                **({"parameter_stacking_s": stacking["seconds"]} if n > 1 else {}),
                "synergic": summarise(times["synergic"]),
                "handwritten": summarise(times["handwritten"]),
                "synergic_over_handwritten": paired_ratio(times["synergic"], times["handwritten"]),
                "flops_per_step": flops,
                "fused": bool(trainer.fuse_components),
            }
            del trainer, variants
        result["backbones"][backbone] = rows
    peak = max(peak_before, measured_peak_flops(device, dtype))
    result["measured_peak_flops"] = peak
    for rows in result["backbones"].values():
        for row in rows.values():
            row["floor_s"] = row["flops_per_step"] / peak
            row["synergic_over_floor"] = row["synergic"]["median_s"] / row["floor_s"]
            row["handwritten_over_floor"] = row["handwritten"]["median_s"] / row["floor_s"]
    return result


def parameter_stacking_cost(backbone: str, components: int, device: torch.device,
                            repeats: int = 5) -> dict[str, float]:
    """Seconds a fused step spends stacking the components' parameters (``torch.stack`` of every
    parameter, forward) and handing their gradients back (the stack's backward), the price of
    keeping the components' own ``nn.Parameter`` objects as what the optimiser steps
    (:class:`synergic.models.fused.FusedSynergicForward`). Median of ``repeats``."""
    import time

    from synergic import build_model
    from synergic.models.fused import FusedSynergicForward
    from synergic_bench.measure import synchronize

    model = build_model(backbone, num_classes=2, components=components).to(device)
    fused = FusedSynergicForward(model)
    # The gradients a step would hand back, made outside the timed block.
    gradients = [torch.randn(components, *p.shape, device=device)
                 for p in model.components[0].parameters()]
    times = []
    for _ in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        synchronize(device)
        start = time.perf_counter()
        params, _, _ = fused._stacked()
        torch.autograd.backward(list(params.values()), gradients)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times[1:]),
            "parameters": sum(p.numel() for p in model.components.parameters())}
