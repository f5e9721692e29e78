"""The machine, peak memory and interleaved timings: what every part of the benchmark shares."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
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
