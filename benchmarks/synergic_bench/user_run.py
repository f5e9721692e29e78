"""The step as a user pays it: the per-iteration cost of a real ``synergic run`` (the difference
between a short and a long run, so that start-up, data generation, evaluation and the final
checkpoint cancel out) against a hand-written step on in-memory tensors, each in a fresh process.

Both processes see the same environment, except where a variant says otherwise: ``synergic`` sets
``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy (``synergic.cli.quiet_openmp_threads``),
so the hand-written process gets the policy the run had. The runs alternate (short, long,
hand-written, short, long, ...), so that a load that comes and goes affects all alike.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from synergic_bench.measure import REPO

CHILD = """
import json, sys, time, torch
sys.path.insert(0, {bench!r})
from synergic_bench.steps import handwritten_from, make_trainer
config = json.loads({config!r})
trainer = make_trainer(config, torch.device("cpu"), components=2)
step = handwritten_from(trainer, config)
for k in range(config["short"]):
    step(k)
start = time.perf_counter()
for k in range(config["short"], config["long"]):
    step(k)
print(json.dumps({{"seconds_per_step": (time.perf_counter() - start) / (config["long"] - config["short"])}}))
"""


def run_overrides(config: dict[str, Any], iterations: int) -> list[str]:
    """``--set`` options of the demo recipe for this measurement: the backbone, the image size and
    batch of ``config``, augmentation off, one validation and one checkpoint at the end, no
    bootstrap, no disk cache."""
    size = config["train_size"]
    sets = {
        "model.backbone.name": config["backbone"], "data.image_size": size,
        "data.options.image_size": size, "data.options.num_train": config["train_images"],
        "data.options.num_test": 16, "data.validation_fraction": 0.1, "data.augment": "false",
        "data.cache": "false", "train.batch_size": config["batch"], "train.iterations": iterations,
        "train.eval_every": iterations, "train.checkpoint_every": iterations,
        "train.n_bootstrap": 0, "train.channels_last": str(config["channels_last"]).lower(),
    }
    if config.get("momentum") is not None:  # the demo's SGD has momentum 0.9; the paper's none
        sets["train.optimizer.momentum"] = config["momentum"]
    return [option for key, value in sets.items() for option in ("--set", f"{key}={value}")]


def bench_user_run(config: dict[str, Any]) -> dict[str, Any]:
    """``config``: backbone, train_size, batch, train_images, ``short`` and ``long`` iterations,
    ``repeats``, ``threads`` (OMP_NUM_THREADS of every process, None: the default) and
    ``variants``: a list of ``{"name", "wait_policy", "channels_last", "momentum"}``, each
    measured on its own (``wait_policy`` None: synergic's default, PASSIVE; ``channels_last``
    and ``momentum``: the run's ``train.channels_last`` and ``train.optimizer.momentum``, None
    for the demo's 0.9). The hand-written step is plain SGD without momentum, contiguous, as
    the paper's fine-tuning and a plain PyTorch loop are."""
    short, long = config["short"], config["long"]
    result: dict[str, Any] = {"short_iterations": short, "long_iterations": long,
                              "backbone": config["backbone"], "image_size": config["train_size"],
                              "pairs_per_step": config["batch"], "augment": False, "threads": config.get("threads"), "variants": {}}
    child_config = {**config, "augment": False, "precision": "fp32", "channels_last": False}
    for variant in config["variants"]:
        policy = variant["wait_policy"]
        run_config = {**config, "channels_last": variant["channels_last"],
                      "momentum": variant.get("momentum")}
        env = dict(os.environ)
        env.pop("OMP_WAIT_POLICY", None)
        if policy is not None:
            env["OMP_WAIT_POLICY"] = policy
        if config.get("threads"):
            env["OMP_NUM_THREADS"] = str(config["threads"])
        per_step, hand = [], []
        with tempfile.TemporaryDirectory(prefix="synergic-user-run-") as workdir:
            for repeat in range(config["repeats"]):
                walls = {}
                for iterations in (short, long):
                    command = [sys.executable, "-m", "synergic", "run", "demo", "--quiet", "--overwrite",
                               "--output", str(Path(workdir) / f"run-{iterations}"),
                               *run_overrides(run_config, iterations)]
                    start = time.perf_counter()
                    subprocess.run(command, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
                    walls[iterations] = time.perf_counter() - start
                per_step.append((walls[long] - walls[short]) / (long - short))
                # The hand-written process gets the policy the synergic run had.
                child_env = {**env, "OMP_WAIT_POLICY": policy or "PASSIVE"}
                code = CHILD.format(bench=str(Path(__file__).resolve().parents[1]),
                                    config=json.dumps(child_config))
                output = subprocess.run([sys.executable, "-c", code], check=True, env=child_env,
                                        cwd=REPO, capture_output=True, text=True).stdout
                hand.append(json.loads(output.strip().splitlines()[-1])["seconds_per_step"])
        result["variants"][variant["name"]] = {
            "wait_policy": policy or "PASSIVE (synergic's default)",
            "channels_last": variant["channels_last"],
            "momentum": variant.get("momentum", "the demo's, 0.9"),
            "synergic_run_seconds_per_step": per_step,
            "handwritten_seconds_per_step": hand,
            "median_ratio": statistics.median(a / b for a, b in zip(per_step, hand)),
        }
    return result
