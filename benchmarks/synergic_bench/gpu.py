"""(e) The paper's recipe on a GPU: eager, the step captured as a CUDA graph (a prototype, not
the trainer's), ``torch.compile`` in a child process, how busy the GPU is, and the projection of
100,000 iterations against the arithmetic floor. GPU only."""

from __future__ import annotations

import copy
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from synergic_bench.measure import (
    HOPPER_BF16_PEAK_FLOPS, IMAGENET_MEAN, IMAGENET_STD, PAPER_ITERATIONS, PeakMemory,
    interleaved_timings, summarise, synchronize,
)
from synergic_bench.steps import count_step_flops, handwritten_from, make_trainer

BENCH_SCRIPT = Path(__file__).resolve().parents[1] / "bench.py"


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


def _nonblocking_augment(train_step):
    """``train_step`` with the augmentation's host-to-device transfers non-blocking."""
    def step(index: int):
        with augment_transfers_nonblocking():
            return train_step(index)
    return step


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

    variants = {"synergic_eager": trainer.train_step, "handwritten_eager": handwritten_from(trainer, config),
                "synergic_eager_nonblocking_augment": _nonblocking_augment(trainer.train_step)}
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
    command = [sys.executable, str(BENCH_SCRIPT), "--compile-child", str(target),
               "--device", "cuda"]
    try:
        subprocess.run(command, timeout=budget_s, check=False)
    except subprocess.TimeoutExpired:
        return {"skipped": f"torch.compile did not finish within {budget_s:.0f} s"}
    if not target.exists():
        return {"error": "the compile child wrote no result"}
    return json.loads(target.read_text())


def compile_child(target: Path, device: torch.device, config: dict[str, Any]) -> None:
    """The child of :func:`run_compile_subprocess`: ``config`` is the recipe part of the
    benchmark's configuration."""
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
