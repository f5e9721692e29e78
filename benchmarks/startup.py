"""How long the `synergic` commands that do not train take, from the shell's point of view.

Each command runs as its own process (``python -m synergic ...``, stdout and stderr to
/dev/null), ``--repeats`` times after one warm-up run; the median wall time is reported, with the
minimum and maximum, and the modules that the heavy libraries' import adds are listed from one
``python -X importtime`` run of the command. The JSON (``--output``) holds every sample, the
machine, the versions and the exact command lines.

    python benchmarks/startup.py --output benchmarks/results/startup-cpu.json

Run it from a checkout; it puts the repository first on ``PYTHONPATH`` so the checkout's code is
measured, not an installed copy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: (label, arguments of ``synergic``)
COMMANDS = [
    ("synergic --help", ["--help"]),
    ("synergic list datasets", ["list", "datasets"]),
    ("synergic list", ["list"]),
    ("synergic recipe list", ["recipe", "list"]),
    ("synergic recipe show demo", ["recipe", "show", "demo"]),
    ("synergic recipe check demo", ["recipe", "check", "demo"]),
]
#: Libraries whose import time is worth knowing about.
HEAVY = ("torch", "torchvision", "timm", "sklearn", "scipy", "matplotlib", "numpy", "PIL",
         "pydantic", "rich", "click")


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def wall_time(arguments: list[str], env: dict[str, str]) -> float:
    """Seconds from starting ``python -m synergic ARGUMENTS`` to its exit."""
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "synergic", *arguments], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"synergic {' '.join(arguments)} failed: "
                         f"{completed.stderr.decode(errors='replace').strip()}")
    return seconds


def heavy_imports(arguments: list[str], env: dict[str, str]) -> dict[str, float]:
    """Cumulative import time in seconds of each :data:`HEAVY` library the command imports
    (``python -X importtime``; one run, so only a rough guide)."""
    completed = subprocess.run([sys.executable, "-X", "importtime", "-m", "synergic", *arguments],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True)
    found: dict[str, float] = {}
    for line in completed.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line.split("|"))
        if name in HEAVY and cumulative.isdigit():
            found[name] = max(found.get(name, 0.0), int(cumulative) / 1e6)
    return found


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("synergic", "torch", "timm", "click", "rich", "pydantic", "pluggy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu, "cpu_cores": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(), "python": platform.python_version(),
        "versions": versions,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per command (median)")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    parser.add_argument("--only", help="comma-separated labels, e.g. 'synergic list'")
    args = parser.parse_args(argv)
    env = environment()
    chosen = [(label, arguments) for label, arguments in COMMANDS
              if not args.only or label in args.only.split(",")]
    results = {"machine": machine(), "python": sys.executable, "repeats": args.repeats,
               "method": "subprocess wall time, median of --repeats after one warm-up run",
               "commands": []}
    for label, arguments in chosen:
        wall_time(arguments, env)  # warm-up: the file system cache, .pyc files
        samples = [wall_time(arguments, env) for _ in range(args.repeats)]
        entry = {
            "command": label, "argv": [sys.executable, "-m", "synergic", *arguments],
            "median_s": statistics.median(samples), "min_s": min(samples),
            "max_s": max(samples), "samples_s": samples,
            "heavy_imports_s": heavy_imports(arguments, env),
        }
        results["commands"].append(entry)
        heavy = ", ".join(f"{k} {v:.2f}" for k, v in sorted(entry["heavy_imports_s"].items(),
                                                             key=lambda kv: -kv[1])[:4])
        print(f"{label:<32} median {entry['median_s']:.2f} s  (min {entry['min_s']:.2f}, "
              f"max {entry['max_s']:.2f})  imports: {heavy or '-'}", flush=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written: {args.output}")


if __name__ == "__main__":
    main()
