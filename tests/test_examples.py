"""The scripts in examples/ run as written, on tiny data (a test fails when an example breaks).

Each script runs in its own Python process, the way a reader runs it, with flags that shrink it
to seconds: a tiny timm model, 32 x 32 images, a few iterations. The two training scripts start
together (most of their time is importing torch and timm, which two cores do side by side).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

TINY_TRAINING = [
    "--backbone", "test_efficientnet", "--image-size", "32", "--iterations", "3",
    "--train-per-class", "4", "--test-per-class", "2", "--batch-size", "4",
]
TRAINING_RUNS = {
    "train_on_your_images.py": ["--workdir", "work", *TINY_TRAINING],
    "custom_training_loop.py": [*TINY_TRAINING, "--hidden", "16", "--components", "3"],
}


def example_environment(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SYNERGIC_CACHE_DIR"] = str(tmp_path / "cache")  # never the user's image cache
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    return env


def start_example(name: str, arguments: list[str], cwd: Path) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), *arguments], cwd=cwd,
        env=example_environment(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(name: str, process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, f"{name} failed:\n{stdout}\n{stderr}"
    return stdout


@pytest.fixture(scope="module")
def training_runs(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """Both training examples, run at the same time: {name: (working folder, result)}."""
    folders = {name: tmp_path_factory.mktemp(name.removesuffix(".py")) for name in TRAINING_RUNS}
    processes = {
        name: start_example(name, arguments, folders[name])
        for name, arguments in TRAINING_RUNS.items()
    }
    results = {}
    try:
        for name, process in processes.items():
            stdout, stderr = process.communicate(timeout=600)
            results[name] = (
                folders[name],
                subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr),
            )
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    return results


def output_of(training_runs, name: str) -> tuple[Path, str]:
    folder, result = training_runs[name]
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return folder, result.stdout


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
    tested = {"example_data.py", *TRAINING_RUNS}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_example_data_writes_both_layouts(tmp_path):
    process = start_example(
        "example_data.py",
        [str(tmp_path / "folder"), "--train-per-class", "2", "--test-per-class", "1",
         "--size", "24"],
        tmp_path,
    )
    assert "wrote 9 images" in finish("example_data.py", process)
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


def test_train_on_your_images_runs_as_written(training_runs):
    folder, out = output_of(training_runs, "train_on_your_images.py")
    run_dir = folder / "work" / "run"
    assert "classes: eosinophil, lymphocyte, neutrophil" in out
    assert f"run directory: {Path('work') / 'run'}" in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"ap", "auc", "accuracy", "balanced_accuracy"}
    assert len(metrics["test_components"]) == 2
    assert len((run_dir / "predictions.csv").read_text().splitlines()) == 1 + 3 * 2
    # The command it prints works too: the recipe it wrote is a valid recipe.
    from synergic.recipe import load_recipe

    recipe = load_recipe(folder / "work" / "recipe.yaml")
    assert recipe.data.dataset == "folder" and recipe.train.iterations == 3


def test_train_on_your_images_csv_layout_opens(tmp_path):
    """The csv layout's recipe reads the same classes and images (training is the same code)."""
    from synergic.experiment import open_datasets
    from synergic.recipe import recipe_from_dict

    example = load_example_module("train_on_your_images")
    data_root = example.write_dataset(
        tmp_path / "data", layout="csv", train_per_class=3, test_per_class=2, size=32
    )
    arguments = argparse.Namespace(
        layout="csv", image_size=32, seed=0, components=2, backbone="test_efficientnet",
        pretrained=False, iterations=3, batch_size=4, lr=0.01, device="cpu",
    )
    recipe = recipe_from_dict(example.make_recipe(arguments, data_root))
    train, validation, test = open_datasets(recipe)
    assert list(train.classes) == ["eosinophil", "lymphocyte", "neutrophil"]
    assert sorted(train.labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2] and len(test) == 6
    assert validation is None  # carved from train by the run (validation_fraction)


def test_custom_training_loop_runs_as_written(training_runs):
    _, out = output_of(training_runs, "custom_training_loop.py")
    lines = out.splitlines()
    steps = [line for line in lines if line.startswith("step")]
    assert len(steps) == 2 and "synergic 12=" in steps[0] and "23=" in steps[0]  # SDL^3: 3 heads
    aggregate = [line for line in lines if line.startswith("test, aggregate:")]
    assert len(aggregate) == 1 and "balanced_accuracy" in aggregate[0]
    assert sum(line.startswith("test, component") for line in lines) == 3
