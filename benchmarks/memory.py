"""Peak resident memory and images/s of decoding a data set of the ISIC 2020 size into the image
cache, and of training from it: memory must stay flat as the data set grows.

The script writes ``--images`` small JPEGs of varied sizes to a temporary folder (33,126 by
default, the ISIC 2020 training set's count; small files so that generating them is quick: the
decoded size, ``--image-size``, is what the memory depends on), then for each of ``--sizes``
(prefixes of that set) and each memory policy runs one fresh process that

(a) decodes the set through :func:`synergic.data.cache.cached_decode` into an empty cache folder
    at ``--image-size`` px, with the default ``num_workers="auto"`` (one decode worker per core);
(b) opens the cache entry again (a second run's start);
(c) gathers ``--gathers`` random batches of ``--gather-batch`` pairs from the decoded tensor
    (the trainer's batch gather, ``images[indices]``, without the model: the data path alone);
(d) trains a tiny SDL^2 model (``--backbone``) for ``--steps`` steps, the trainer gathering its
    batches from the decoded tensor.

Each phase records its seconds, images/s and peak memory: ``ru_maxrss`` (the process's peak
resident set since it started, which counts mapped file pages), the peak ``RssAnon`` (memory
only this process holds; what can run a machine out of memory) and the peak ``RssFile``
(pages of mapped files: the page cache, which the kernel reclaims) sampled from
``/proc/self/status`` every 10 ms, and the largest decode worker's ``ru_maxrss``.

Policies: ``default`` (in memory below ``MEMMAP_THRESHOLD_BYTES``, 2 GiB, memory-mapped at and
above it) and ``mapped`` (the threshold set to 0: every size memory-mapped, to show that path
stays flat at every size).

    python benchmarks/memory.py --sizes 2000 8000 33126 --output benchmarks/results/memory-cpu.json

(About 15 minutes on 2 busy cores, 5 GB of disk for the largest cache entry.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ISIC2020_IMAGES = 33_126


# --- memory ------------------------------------------------------------------------------------


def status_mib() -> dict[str, float]:
    """RssAnon, RssFile, VmRSS and VmHWM of this process (MiB), from /proc/self/status."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("RssAnon", "RssFile", "VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values


class PeakSampler:
    """Peak RssAnon and RssFile of this process over a block, sampled every 10 ms."""

    def __init__(self) -> None:
        self.peak = {"RssAnon": 0.0, "RssFile": 0.0}
        self._stop = threading.Event()

    def _sample(self) -> None:
        while True:
            now = status_mib()
            for key in self.peak:
                self.peak[key] = max(self.peak[key], now[key])
            if self._stop.wait(0.01):
                return

    def __enter__(self) -> PeakSampler:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        now = status_mib()
        for key in self.peak:
            self.peak[key] = max(self.peak[key], now[key])

    def result(self) -> dict[str, float]:
        return {
            "peak_rss_anon_mib": round(self.peak["RssAnon"], 1),
            "peak_rss_file_mib": round(self.peak["RssFile"], 1),
            "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }


# --- the generated data set --------------------------------------------------------------------


def generate_jpegs(folder: Path, count: int, smallest: int, largest: int) -> list[Path]:
    """``count`` JPEGs of sides in [smallest, largest] px (varied aspect ratios, as dermoscopy
    images are): crops of a few smooth, noisy lesion-like patterns, quality 90."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    side = largest
    yy, xx = np.mgrid[0:side, 0:side] / side
    bases = []
    for _ in range(32):
        cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.35)
        lesion = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r**2))
        skin = rng.uniform(150, 230, 3)
        dark = rng.uniform(30, 120, 3)
        pixels = skin * (1 - lesion[..., None]) + dark * lesion[..., None]
        pixels += rng.normal(0, 8, pixels.shape)
        bases.append(np.clip(pixels, 0, 255).astype(np.uint8))
    paths = []
    for index in range(count):
        path = folder / f"ISIC_{index:07d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        h, w = rng.integers(smallest, largest + 1, 2)
        base = bases[index % len(bases)]
        top, left = rng.integers(0, side - h + 1), rng.integers(0, side - w + 1)
        Image.fromarray(base[top : top + h, left : left + w]).save(path, quality=90)
    return paths


# --- one measurement (a fresh process) ---------------------------------------------------------


def measure(options: dict[str, Any]) -> dict[str, Any]:
    import torch

    from synergic import BalancedPairSampler, SynergicLoss, Trainer, build_model
    from synergic.data import cache as cache_module
    from synergic.data.cache import cached_decode, resolve_num_workers
    from synergic.data.datasets.base import FileImageDataset

    torch.set_num_threads(options["threads"])
    if options["policy"] == "mapped":
        cache_module.MEMMAP_THRESHOLD_BYTES = 0
    count, size = options["count"], options["image_size"]
    paths = sorted(Path(options["jpegs"]).glob("*.jpg"))[:count]
    labels = [int(i % 5 == 0) for i in range(count)]  # 20 % positive
    dataset = FileImageDataset(
        ["benign", "malignant"], [p.stem for p in paths], labels, paths, name="generated"
    )
    cache_dir = Path(options["cache_dir"])
    result: dict[str, Any] = {
        "images": count, "image_size": size, "policy": options["policy"],
        "decoded_mib": round(count * 3 * size * size / 1024**2, 1),
        "decode_workers": resolve_num_workers("auto", count),
        "at_start": {k: round(v, 1) for k, v in status_mib().items()},
    }

    with PeakSampler() as sampler:
        start = time.perf_counter()
        images = cached_decode(dataset, image_size=size, resample="bicubic", cache_dir=cache_dir)
        seconds = time.perf_counter() - start
    mapped = not images.is_shared() and _is_file_backed(images)
    result["decode"] = {
        "seconds": round(seconds, 2), "images_per_s": round(count / seconds, 1),
        "memory_mapped": mapped, **sampler.result(),
        "largest_worker_ru_maxrss_mib": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        ),
    }
    del images

    with PeakSampler() as sampler:
        start = time.perf_counter()
        images = cached_decode(dataset, image_size=size, resample="bicubic", cache_dir=cache_dir)
        seconds = time.perf_counter() - start
    result["reopen"] = {"seconds": round(seconds, 3), **sampler.result()}

    generator = torch.Generator().manual_seed(0)
    gathers, rows = options["gathers"], 2 * options["gather_batch"]
    with PeakSampler() as sampler:
        start = time.perf_counter()
        for _ in range(gathers):
            images[torch.randint(0, count, (rows,), generator=generator)].float()
        seconds = time.perf_counter() - start
    result["gather"] = {
        "batches": gathers, "images_per_batch": rows, "seconds": round(seconds, 2),
        "images_per_s": round(gathers * rows / seconds, 1), **sampler.result(),
    }

    torch.manual_seed(0)
    model = build_model(options["backbone"], num_classes=2, components=2)
    batch = options["batch_size"]
    sampler_ = BalancedPairSampler(labels, num_streams=2, batch_size=batch, seed=0)
    trainer = Trainer(
        model, SynergicLoss(3.0), sampler_, images, torch.tensor(labels),
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), iterations=10**9,
        device="cpu", log_every=10**9,
    )
    trainer.train_step(0)  # first-step set-up out of the timing
    with PeakSampler() as sampler:
        start = time.perf_counter()
        for step in range(1, options["steps"] + 1):
            trainer.train_step(step)
        seconds = time.perf_counter() - start
    steps = options["steps"]
    result["train"] = {
        "steps": steps, "pairs_per_step": batch, "seconds": round(seconds, 2),
        "images_per_s": round(2 * batch * steps / seconds, 1), **sampler.result(),
    }
    result["at_end"] = {k: round(v, 1) for k, v in status_mib().items()}
    return result


def _is_file_backed(tensor) -> bool:
    address = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end:
            return len(fields) == 6 and fields[5].endswith(".npy")
    return False


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=ISIC2020_IMAGES,
                        help="JPEGs to generate (default: the ISIC 2020 training set's 33,126)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, ISIC2020_IMAGES],
                        help="data-set sizes measured (prefixes of the generated set)")
    parser.add_argument("--policies", nargs="+", default=["default", "mapped"],
                        choices=["default", "mapped"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--jpeg-sides", type=int, nargs=2, default=[48, 96],
                        metavar=("SMALLEST", "LARGEST"), help="sides of the generated JPEGs (px)")
    parser.add_argument("--gathers", type=int, default=300, help="random batches gathered")
    parser.add_argument("--gather-batch", type=int, default=32, help="pairs per gathered batch")
    parser.add_argument("--steps", type=int, default=50, help="training steps")
    parser.add_argument("--batch-size", type=int, default=4, help="pairs per training step")
    parser.add_argument("--backbone", default="test_efficientnet")
    parser.add_argument("--threads", type=int, default=1, help="torch threads while training")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the JPEGs and caches go (default: a temporary folder)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch
    from bench import machine_description

    from synergic.data.cache import MEMMAP_THRESHOLD_BYTES

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="synergic-memory-"))
    started = time.perf_counter()
    jpegs = workdir / "jpegs"
    generate_jpegs(jpegs, max(args.images, *args.sizes), *args.jpeg_sides)
    generated_s = time.perf_counter() - started
    jpeg_mib = sum(p.stat().st_size for p in jpegs.glob("*.jpg")) / 1024**2
    print(f"generated {args.images} JPEGs ({jpeg_mib:.0f} MiB) in {generated_s:.0f} s", flush=True)
    runs = []
    for count in args.sizes:
        for policy in args.policies:
            decoded = count * 3 * args.image_size**2
            already_mapped = decoded >= MEMMAP_THRESHOLD_BYTES and "default" in args.policies
            if policy == "mapped" and already_mapped:
                continue  # the default policy maps this size already
            cache_dir = workdir / f"cache-{count}-{policy}"
            options = {
                "count": count, "policy": policy, "image_size": args.image_size,
                "jpegs": str(jpegs), "cache_dir": str(cache_dir), "steps": args.steps,
                "batch_size": args.batch_size, "backbone": args.backbone, "threads": args.threads,
                "gathers": args.gathers, "gather_batch": args.gather_batch,
            }
            completed = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(options)],
                check=True, capture_output=True, text=True,
                env=dict(os.environ, PYTHONPATH=str(REPO)),
            )
            shutil.rmtree(cache_dir, ignore_errors=True)
            result = json.loads(completed.stdout.strip().splitlines()[-1])
            runs.append(result)
            d, g, t = result["decode"], result["gather"], result["train"]
            print(
                f"{count:>6} images {policy:>7}: decode {d['images_per_s']:.0f} img/s, peak "
                f"anon {d['peak_rss_anon_mib']:.0f} MiB, file {d['peak_rss_file_mib']:.0f} MiB, "
                f"maxrss {d['ru_maxrss_mib']:.0f} MiB (mapped: {d['memory_mapped']}); gather "
                f"{g['images_per_s']:.0f} img/s, peak anon {g['peak_rss_anon_mib']:.0f} MiB, file "
                f"{g['peak_rss_file_mib']:.0f} MiB; train "
                f"{t['images_per_s']:.0f} img/s, peak anon {t['peak_rss_anon_mib']:.0f} MiB, file "
                f"{t['peak_rss_file_mib']:.0f} MiB",
                flush=True,
            )
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    results = {
        "what": "peak resident memory and images/s of decoding into the image cache and of "
                "training from it, at several data-set sizes",
        "command": " ".join(["python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine_description(torch.device("cpu")),
        "settings": {
            "generated_images": args.images, "jpeg_sides": args.jpeg_sides,
            "generated_jpeg_mib": round(jpeg_mib, 1), "generation_s": round(generated_s, 1),
            "image_size": args.image_size, "backbone": args.backbone, "steps": args.steps,
            "gathers": args.gathers, "gather_pairs": args.gather_batch,
            "pairs_per_step": args.batch_size, "torch_threads_training": args.threads,
            "memmap_threshold_bytes": MEMMAP_THRESHOLD_BYTES,
            "available_cores": len(os.sched_getaffinity(0)),
        },
        "runs": runs,
        "total_s": round(time.perf_counter() - started, 1),
    }
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
