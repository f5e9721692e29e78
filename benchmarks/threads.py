"""Wall and CPU time of a short demo run with spinning and with sleeping OpenMP threads.

torch's CPU kernels run on OpenMP threads. ``OMP_WAIT_POLICY=ACTIVE`` (what OpenMP runtimes do by
default, for a while) keeps idle threads spinning; ``PASSIVE`` lets them sleep. ``synergic``
sets ``PASSIVE`` unless the user chose a policy (``synergic.cli.quiet_openmp_threads``). This
script runs the same short demo under each policy, alternating, ``--repeats`` times, each as a
fresh ``synergic run`` process (the policy is read when OpenMP starts), and writes the wall,
user and system seconds of each run plus the machine's load average to a JSON file.

    python benchmarks/threads.py --repeats 3 --output benchmarks/results/threads-cpu.json

Run it both on an idle machine and with other work on the cores: the policy matters most when
the cores are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_OVERRIDES = [
    "train.iterations=100", "train.eval_every=100", "train.checkpoint_every=100",
    "train.n_bootstrap=0", "data.cache=false",
]


def one_run(policy: str, folder: Path, threads: int | None) -> dict[str, float]:
    env = dict(os.environ, OMP_WAIT_POLICY=policy)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "synergic", "run", str(REPO / "recipes" / "demo.yaml"),
               "--quiet", "--output", str(folder / f"{policy}-{time.monotonic_ns()}")]
    for override in DEMO_OVERRIDES:
        command += ["--set", override]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall_s": round(wall, 2),
        "user_s": round(after.ru_utime - before.ru_utime, 2),
        "system_s": round(after.ru_stime - before.ru_stime, 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS (default: torch's)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    runs: dict[str, list[dict[str, float]]] = {"PASSIVE": [], "ACTIVE": []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for policy in runs:
                runs[policy].append(one_run(policy, Path(folder), args.threads))
                print(policy, runs[policy][-1], flush=True)
    summary = {
        policy: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for policy, results in runs.items()
    }
    import torch

    result = {
        "what": "synergic run recipes/demo.yaml " + " ".join(f"--set {o}" for o in DEMO_OVERRIDES),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": args.threads or torch.get_num_threads()},
        "median": summary,
        "runs": runs,
    }
    print(json.dumps(summary, indent=2))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
