"""The scripts in examples/ run as written, on tiny data (a test fails when an example breaks).

Each script runs in its own Python process, the way a reader runs it, with flags that shrink it
to a few seconds: a tiny timm model, 32 x 32 images, a few iterations.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

TINY_TRAINING = [
    "--backbone", "test_efficientnet", "--image-size", "32", "--iterations", "3",
    "--train-per-class", "4", "--test-per-class", "2", "--batch-size", "4",
]


def run_example(name: str, *args: str, cwd: Path, tmp_path: Path) -> str:
    env = dict(os.environ)
    env["SYNERGIC_CACHE_DIR"] = str(tmp_path / "cache")  # never the user's image cache
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def load_example_module(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module


def test_every_example_is_tested():
    tested = {"example_data.py", "train_on_your_images.py", "custom_training_loop.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_example_data_writes_both_layouts(tmp_path):
    out = run_example(
        "example_data.py", str(tmp_path / "folder"), "--train-per-class", "2",
        "--test-per-class", "1", "--size", "24", cwd=tmp_path, tmp_path=tmp_path,
    )
    assert "wrote 9 images" in out
    for name in ("eosinophil", "lymphocyte", "neutrophil"):
        assert len(list((tmp_path / "folder" / "train" / name).glob("*.png"))) == 2
        assert len(list((tmp_path / "folder" / "test" / name).glob("*.png"))) == 1

    example_data = load_example_module("example_data")
    root = example_data.write_dataset(
        tmp_path / "csv", layout="csv", train_per_class=2, test_per_class=1, size=24
    )
    with (root / "train.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and {r["label"] for r in rows} == set(example_data.CLASSES)
    assert all((root / r["image"]).is_file() for r in rows)


def test_example_data_is_deterministic():
    example_data = load_example_module("example_data")
    first, labels = example_data.generate(3, size=32, seed=5)
    again, _ = example_data.generate(3, size=32, seed=5)
    other, _ = example_data.generate(3, size=32, seed=6)
    assert first.shape == (9, 32, 32, 3) and first.dtype.name == "uint8"
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert (first == again).all() and not (first == other).all()


def test_train_on_your_images_runs_as_written(tmp_path):
    out = run_example(
        "train_on_your_images.py", "--workdir", "work", *TINY_TRAINING,
        cwd=tmp_path, tmp_path=tmp_path,
    )
    run_dir = tmp_path / "work" / "run"
    assert "classes: eosinophil, lymphocyte, neutrophil" in out
    assert f"run directory: {Path('work') / 'run'}" in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"ap", "auc", "accuracy", "balanced_accuracy"}
    assert len(metrics["test_components"]) == 2
    assert len((run_dir / "predictions.csv").read_text().splitlines()) == 1 + 3 * 2
    # The command it prints works too: the recipe it wrote is a valid recipe.
    from synergic.recipe import load_recipe

    recipe = load_recipe(tmp_path / "work" / "recipe.yaml")
    assert recipe.data.dataset == "folder" and recipe.train.iterations == 3


def test_train_on_your_images_csv_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNERGIC_CACHE_DIR", str(tmp_path / "cache"))
    example = load_example_module("train_on_your_images")
    example.main(["--layout", "csv", "--workdir", str(tmp_path / "work"), *TINY_TRAINING])
    metrics = json.loads((tmp_path / "work" / "run" / "metrics.json").read_text())
    assert metrics["classes"] == ["eosinophil", "lymphocyte", "neutrophil"]
    assert (tmp_path / "work" / "data" / "train.csv").is_file()


def test_custom_training_loop_runs_as_written(tmp_path):
    out = run_example(
        "custom_training_loop.py", *TINY_TRAINING, "--hidden", "16", "--components", "3",
        cwd=tmp_path, tmp_path=tmp_path,
    )
    lines = out.splitlines()
    steps = [line for line in lines if line.startswith("step")]
    assert len(steps) == 2 and "synergic 12=" in steps[0] and "23=" in steps[0]  # SDL^3: 3 heads
    aggregate = [line for line in lines if line.startswith("test, aggregate:")]
    assert len(aggregate) == 1 and "balanced_accuracy" in aggregate[0]
    assert sum(line.startswith("test, component") for line in lines) == 3
