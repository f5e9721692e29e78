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
    projected time of 100,000 iterations against the arithmetic floor;
(f) side by side, for SDL^1..4 of each backbone (resnet18 and efficientnet_lite0 on a CPU,
    resnet50 on a GPU): synergic's step, the hand-written step, and the arithmetic floor (FLOPs
    of the step / this machine's measured matrix-product rate);
(g) the step as a user pays it: a real ``synergic run`` of 20 and of 120 iterations (fresh
    processes, augmentation off), the difference per iteration, against a hand-written step on
    in-memory tensors in a fresh process (CPU).

The parts live in ``benchmarks/synergic_bench/``: ``measure`` (machine, memory, interleaved
timings), ``data_path`` (a), ``steps`` (b, c, f and the hand-written step), ``gpu`` (e),
``user_run`` (g); this file is the command.

Everything is written to one JSON file with the machine's description. Timings interleave the
variants they compare (A, B, A, B, ...) and report medians, so that a load that comes and goes on a
shared machine affects both alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the synergic_bench package beside it

import torch  # noqa: E402

from synergic_bench.data_path import bench_data_path  # noqa: E402
from synergic_bench.gpu import bench_recipe, compile_child  # noqa: E402
from synergic_bench.measure import REPO, machine_description  # noqa: E402
from synergic_bench.steps import (  # noqa: E402 - handwritten_sdl_step: the reference step
    bench_components, bench_overhead, bench_side_by_side, handwritten_sdl_step,
)
from synergic_bench.user_run import bench_user_run  # noqa: E402

# handwritten_sdl_step is re-exported: tests/test_fast_paths.py compares the trainer with it.
__all__ = ["configuration", "format_summary", "handwritten_sdl_step", "main", "targets_met"]

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
            "side_by_side": {**model, "backbones": ["resnet50"], "components": [1, 2, 3, 4],
                             "augment": False, "warmup": 2, "rounds": 3 if quick else 5,
                             "steps_per_round": 5 if quick else 10},
            "recipe": model,
        }
    # The CPU setting: 64 px, 16 pairs, augmentation off (the user-run part's too).
    small = {"train_size": 64, "batch": 16, "precision": "fp32", "channels_last": False,
             "train_images": 64, "augment": False, "components": [1, 2, 3, 4], "warmup": 1,
             "steps_per_round": 1}
    cpu_parts = {
        "side_by_side": {**small, "backbones": ["resnet18", "efficientnet_lite0"],
                         "rounds": 3 if quick else 5},
        "user_run": {**small, "backbone": "resnet18", "train_images": 80,
                     "short": 5 if quick else 20, "long": 25 if quick else 120,
                     "repeats": 1 if quick else 3,
                     # the demo as it ships (SGD momentum 0.9, channels_last true, synergic's
                     # PASSIVE threads), then one change at a time towards the hand-written step
                     "variants": [
                         {"name": "demo_as_shipped", "wait_policy": None, "channels_last": True},
                         {"name": "plain_sgd", "wait_policy": None, "channels_last": True,
                          "momentum": 0.0},
                         {"name": "plain_sgd_contiguous", "wait_policy": None,
                          "channels_last": False, "momentum": 0.0},
                         {"name": "plain_sgd_contiguous_active_threads", "wait_policy": "ACTIVE",
                          "channels_last": False, "momentum": 0.0},
                     ]},
    }
    if quick:
        model = {"backbone": "resnet10t", "train_size": 224, "batch": 4, "precision": "fp32",
                 "channels_last": False, "train_images": 64}
        return {
            **cpu_parts,
            "data": {"image_size": 224, "data_images": 24, "data_batch": 32, "data_batches": 4},
            "overhead": {**model, "warmup": 2, "rounds": 11, "steps_per_round": 1},
            "components": {**model, "components": [1, 2, 3, 4], "warmup": 1, "rounds": 5,
                           "steps_per_round": 1},
        }
    model = {"backbone": "resnet18", "train_size": 224, "batch": 8, "precision": "fp32",
             "channels_last": False, "train_images": 128}
    return {
        **cpu_parts,
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
    side = results.get("side_by_side")
    if side and "backbones" in side:
        for backbone, rows in side["backbones"].items():
            worst = max(row["synergic_over_handwritten"] for row in rows.values())
            met[f"synergic_over_handwritten_{backbone}_worst_n"] = {
                "value": worst, "target": "<= 1.05", "met": worst <= 1.05}
    user_run = results.get("user_run")
    if user_run and "variants" in user_run:
        for name, row in user_run["variants"].items():
            met[f"user_run_over_handwritten_{name}"] = {
                "value": row["median_ratio"], "target": "<= 1.05", "met": row["median_ratio"] <= 1.05}
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
    parser.add_argument("--only", default="data,overhead,components,side_by_side,user_run,recipe",
                        help="comma-separated parts: data, overhead, components, side_by_side, "
                        "user_run (CPU), recipe (GPU)")
    parser.add_argument("--time-budget", type=float, default=600.0,
                        help="seconds; torch.compile is tried only with time left (GPU)")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (default: torch's); 1 is steadier on a busy, shared machine")
    parser.add_argument("--originals", type=Path,
                        help="folder of real-size JPEGs for (a) (default: the ISIC 2016 sample's)")
    parser.add_argument("--user-iterations", help="SHORT,LONG: the two runs of user_run "
                        "(default 20,120; --quick 5,25)")
    parser.add_argument("--user-repeats", type=int, help="repeats of user_run (default 3; --quick 1)")
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
        compile_child(args.compile_child, device, configuration("cuda", quick=True)["recipe"])
        return 0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    config = configuration(device.type, quick=args.quick)
    config["data"]["originals"] = args.originals
    if "user_run" in config:
        if args.user_iterations:
            short, long = (int(v) for v in args.user_iterations.split(","))
            config["user_run"].update(short=short, long=long)
        if args.user_repeats:
            config["user_run"]["repeats"] = args.user_repeats
        if args.threads == 1:  # one thread: no OpenMP thread waits, so the policy is moot
            config["user_run"]["variants"] = [v for v in config["user_run"]["variants"]
                                              if v["wait_policy"] is None]
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
        if "side_by_side" in parts:
            part("side_by_side", lambda: bench_side_by_side(config["side_by_side"], device))
        if "user_run" in parts and device.type == "cpu":
            part("user_run", lambda: bench_user_run({**config["user_run"], "threads": args.threads}))
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
    side = results.get("side_by_side", {})
    for backbone, rows in side.get("backbones", {}).items():
        for n, row in rows.items():
            lines.append(f"  (f) {backbone} SDL^{n}: synergic {row['synergic']['median_s'] * 1000:.0f} ms, "
                         f"hand-written {row['handwritten']['median_s'] * 1000:.0f} ms "
                         f"(x{row['synergic_over_handwritten']:.2f}), floor "
                         f"{row['floor_s'] * 1000:.0f} ms")
    for name, row in results.get("user_run", {}).get("variants", {}).items():
        lines.append(f"  (g) {name:28s} synergic run {min(row['synergic_run_seconds_per_step']):.3f} s/it, "
                     f"hand-written {min(row['handwritten_seconds_per_step']):.3f} s/it: "
                     f"x{row['median_ratio']:.2f}")
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
