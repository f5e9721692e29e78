"""The run directory: the selected checkpoint, honest splits, the data record, absolute paths.

Every run here is the tiny recipe (about a second); results compared exactly use one thread.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path

import pytest
import yaml
from helpers import error_lines, invoke, read_csv
from tiny_recipe import write_recipe

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- the selected checkpoint ------------------------------------------------------------------


@pytest.fixture(scope="module")
def best_before_last(tmp_path_factory):
    """A run with validation at every step whose best validation AP is not at the last step."""
    folder = tmp_path_factory.mktemp("selection")
    for seed in range(8):
        recipe = write_recipe(folder / f"tiny{seed}.yaml", seed=seed, **{"train.eval_every": 1})
        run_dir = folder / f"run{seed}"
        code, output = invoke(["run", recipe, "--output", run_dir])
        assert code == 0, output
        metrics = json.loads((run_dir / "metrics.json").read_text())
        if metrics["selected"]["step"] != metrics["iterations"]:
            return run_dir
    pytest.fail("no seed gave a best validation step before the last step")


def test_the_reported_model_is_the_one_selected_on_validation(best_before_last):
    from synergic.serving import evaluate_run

    metrics = json.loads((best_before_last / "metrics.json").read_text())
    selected = metrics["selected"]
    assert selected["checkpoint"] == "best" and selected["metric"] == "ap"
    assert selected["step"] == metrics["best_validation_step"] < metrics["iterations"]
    assert metrics["validation"]["step"] == selected["step"]
    assert math.isclose(metrics["validation"]["ap"], selected["value"])
    assert "test_last" in metrics and "test_last_components" in metrics

    again = evaluate_run(best_before_last, checkpoint="best")
    for name, value in again["aggregate"].items():
        assert value == pytest.approx(metrics["test"][name], abs=1e-9), name
    last = evaluate_run(best_before_last, checkpoint="last")
    for name, value in last["aggregate"].items():
        assert value == pytest.approx(metrics["test_last"][name], abs=1e-9), name
    record = json.loads((best_before_last / "run.json").read_text())
    assert record["selected"] == selected


def test_eval_on_the_command_line_defaults_to_the_selected_checkpoint(best_before_last):
    code, output = invoke(["eval", best_before_last])
    assert code == 0, output
    metrics = json.loads((best_before_last / "metrics.json").read_text())
    assert "best.pt" in output
    assert f"{metrics['test']['auc']:.4f}" in output


def test_select_last_reports_the_final_weights(tmp_path):
    recipe = write_recipe(tmp_path / "tiny.yaml", **{"train.select": "last"})
    code, output = invoke(["run", recipe, "--output", tmp_path / "run"])
    assert code == 0, output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["selected"] == {"checkpoint": "last", "step": 6}
    assert "test_last" not in metrics


def test_select_best_without_a_validation_split_fails_before_training(tmp_path):
    recipe = write_recipe(
        tmp_path / "tiny.yaml", **{"train.select": "best", "data.validation_fraction": 0.0}
    )
    code, output = invoke(["run", recipe, "--output", tmp_path / "run"])
    assert code == 1
    (line,) = error_lines(output)
    assert "train.select is 'best' but the run has no validation split" in line
    assert not (tmp_path / "run").exists()


# -- honest splits ----------------------------------------------------------------------------


def test_two_malignant_among_38_gives_a_validation_split_with_both_classes(tmp_path):
    options = {"num_train": 38, "num_test": 8, "image_size": 32, "malignant_fraction": 2 / 38}
    recipe = write_recipe(
        tmp_path / "tiny.yaml",
        **{"data.options": options, "data.validation_fraction": 0.2, "train.eval_every": 2},
    )
    code, output = invoke(["run", recipe, "--output", tmp_path / "run"])
    assert code == 0, output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["data"]["train"] == {"benign": 29, "malignant": 1}
    assert metrics["data"]["validation"] == {"benign": 7, "malignant": 1}
    assert metrics["validation"]["ap"] is not None  # defined: both classes are there
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
    code, output = invoke(["eval", tmp_path / "run", "--checkpoint", "best"])
    assert code == 0, output


def test_a_class_with_one_image_cannot_be_carved_and_says_what_to_do(tmp_path):
    options = {"num_train": 12, "num_test": 8, "image_size": 32, "malignant_fraction": 1 / 12}
    recipe = write_recipe(tmp_path / "tiny.yaml", **{"data.options": options})
    code, output = invoke(["run", recipe, "--output", tmp_path / "run"])
    assert code == 1
    (line,) = error_lines(output)
    assert "class 'malignant' has a single training image" in line
    assert "data.allow_incomplete_validation=true" in line
    assert not (tmp_path / "run").exists()

    with pytest.warns(UserWarning) as warned:
        code, output = invoke(["run", recipe, "--output", tmp_path / "run",
                               "--set", "data.allow_incomplete_validation=true"])
    assert code == 0, output
    messages = [str(w.message) for w in warned]
    assert any(m.startswith("data.validation_fraction=0.25: class 'malignant' has a single")
               for m in messages), messages
    # Validation then holds benign images only: AP is never defined, the last weights are reported.
    assert any("was never defined" in m for m in messages), messages
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["selected"]["checkpoint"] == "last"


def test_splits_csv_lists_every_image_once_as_the_data_record_counts(tmp_path):
    recipe = write_recipe(tmp_path / "tiny.yaml")
    code, output = invoke(["run", recipe, "--output", tmp_path / "run"])
    assert code == 0, output
    rows = read_csv(tmp_path / "run" / "splits.csv")
    assert rows[0] == ["image", "split", "label"]
    images = [row[0] for row in rows[1:]]
    assert len(images) == len(set(images)) == 24 + 16
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    counted = Counter((row[1], row[2]) for row in rows[1:])
    for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
        for label, count in metrics["data"][name].items():
            assert counted[(split, label)] == count
    test_ids = [row[0] for row in read_csv(tmp_path / "run" / "predictions.csv")[1:]]
    assert test_ids == [row[0] for row in rows[1:] if row[1] == "test"]
    # The counts and the fingerprint are printed before training.
    assert "classes: 0=benign, 1=malignant" in output
    assert f"fingerprint {metrics['data']['fingerprint'][:12]}" in output.replace("\n", " ")


def test_the_fingerprint_names_the_data_not_the_run(tmp_path):
    from synergic.rundir import data_fingerprint

    prints = []
    for name, changes in [("a", {}), ("b", {"train.iterations": 2, "name": "other"}),
                          ("c", {"seed": 1}), ("d", {"data.options.seed": 5})]:
        recipe = write_recipe(tmp_path / f"{name}.yaml", **changes)
        code, output = invoke(["run", recipe, "--output", tmp_path / name, "--set",
                               "train.eval_every=0"])
        assert code == 0, output
        prints.append(json.loads((tmp_path / name / "metrics.json").read_text())["data"]["fingerprint"])
    assert prints[0] == prints[1]  # same data, other training
    assert prints[0] != prints[2]  # another seed carves another validation split
    assert prints[0] != prints[3]  # other images
    rows = {"train": [("x", "benign")], "test": [("y", "malignant")]}
    relabelled = {"train": [("x", "malignant")], "test": [("y", "malignant")]}
    assert data_fingerprint(rows) != data_fingerprint(relabelled)
    assert data_fingerprint(rows) == data_fingerprint(dict(reversed(list(rows.items()))))


def test_resuming_on_other_data_is_refused(tmp_path):
    recipe = write_recipe(tmp_path / "tiny.yaml")
    code, output = invoke(["run", recipe, "--output", tmp_path / "run"])
    assert code == 0, output
    # Same recipe keys, other data behind them: a folder data set whose root moved is allowed
    # (data.root is relocatable) only when the images and labels are the same.
    import torch

    path = tmp_path / "run" / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    state["metadata"]["data_fingerprint"] = "0" * 64
    torch.save(state, path)
    code, output = invoke(["resume", tmp_path / "run"])
    assert code == 1
    (line,) = error_lines(output)
    assert "the data differ from the run's" in line and "splits.csv" in line


# -- paths --------------------------------------------------------------------------------------


def make_folder_dataset(root: Path, size: int = 32, seed: int = 0) -> None:
    """train/ and test/ folders of small PNGs, two classes told apart by brightness; ``seed``
    changes the pixels, never the names or labels."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", 10), ("test", 6)):
        for label, (name, level) in enumerate((("benign", 60), ("malignant", 190))):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(count // 2 + label):
                pixels = np.clip(rng.normal(level, 25, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}_{k}.png")


def test_a_run_with_a_relative_data_root_is_evaluated_from_anywhere(tmp_path):
    project = tmp_path / "project"
    make_folder_dataset(project / "lesions")
    write_recipe(
        project / "tiny.yaml",
        **{"data.dataset": "folder", "data.root": "lesions", "data.options": {}},
    )
    code, output = invoke(["run", "tiny.yaml", "--output", "runs/r"], cwd=project)
    assert code == 0, output
    run_dir = project / "runs" / "r"
    saved = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert saved["data"]["root"] == str(project / "lesions")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code, output = invoke(["eval", run_dir], cwd=elsewhere)
    assert code == 0, output
    code, output = invoke(["predict", run_dir, project / "lesions" / "test"], cwd=elsewhere)
    assert code == 0, output

    # The data moved: --set data.root points eval at the new place; the error names the path.
    moved = tmp_path / "moved"
    (project / "lesions").rename(moved)
    code, output = invoke(["eval", run_dir], cwd=elsewhere)
    assert code == 1
    (line,) = error_lines(output)
    assert str(project / "lesions") in line
    code, output = invoke(["eval", run_dir, "--set", f"data.root={moved}"], cwd=elsewhere)
    assert code == 0, output
    # A relative --set is taken from the current directory, and resuming follows the data too.
    code, output = invoke(["resume", run_dir, "--set", "data.root=../moved"], cwd=elsewhere)
    assert code == 0, output
    assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["data"]["root"] == str(moved)


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_eval_and_predict_refuse_result_affecting_overrides(tmp_path, command):
    recipe = write_recipe(tmp_path / "tiny.yaml")
    code, output = invoke(["run", recipe, "--output", tmp_path / "run"])
    assert code == 0, output
    args = [command, tmp_path / "run"] + ([tmp_path] if command == "predict" else [])
    code, output = invoke(args + ["--set", "data.image_size=64"])
    assert code == 1
    (line,) = error_lines(output)
    assert "--set data.image_size: only keys that do not change what a run computes" in line
    code, output = invoke([command, tmp_path / "run", "--set", "train.device=cpu"]
                          + ([] if command == "eval" else []))
    if command == "eval":
        assert code == 0, output


def test_results_are_written_with_the_users_umask(tmp_path):
    from synergic.training.checkpoint import atomic_write

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.json", lambda handle: handle.write(b"{}"))
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        atomic_write(tmp_path / "b.json", lambda handle: handle.write(b"{}"))
        assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_every_file_of_a_run_follows_the_umask(tmp_path):
    """metrics.json, the plots, checkpoints and reports were written 0600 (private temporary
    files renamed into place) while log.csv was 0644."""
    old = os.umask(0o022)
    try:
        recipe = write_recipe(tmp_path / "tiny.yaml")
        code, output = invoke(["run", recipe, "--output", tmp_path / "run"])
        assert code == 0, output
        code, output = invoke(["report", tmp_path / "run", "--output", tmp_path / "report.md"])
        assert code == 0, output
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".yaml" or p.name == "recipe.yaml"]
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in files}
    assert "run/checkpoints/last.pt" in modes and "report.md" in modes
    assert set(modes.values()) == {"0o644"}, modes


def test_overwrite_keeps_the_old_run_when_the_new_recipe_is_wrong(tmp_path):
    recipe = write_recipe(tmp_path / "tiny.yaml")
    code, output = invoke(["run", recipe, "--output", tmp_path / "run"])
    assert code == 0, output
    before = (tmp_path / "run" / "metrics.json").read_bytes()
    code, output = invoke(["run", recipe, "--output", tmp_path / "run", "--overwrite",
                           "--set", "data.options.image_sise=8"])
    assert code == 1
    (line,) = error_lines(output)
    assert "image_sise" in line
    assert (tmp_path / "run" / "metrics.json").read_bytes() == before
    code, output = invoke(["run", recipe, "--output", tmp_path / "run", "--overwrite"])
    assert code == 0, output


@pytest.mark.parametrize("first_total", [4, 5])
def test_extending_a_run_that_ended_off_the_validation_cadence_is_the_uninterrupted_run(
    tmp_path, first_total
):
    """The first run validates its last step (4 or 5), off eval_every=3; the run trained to 9
    from the start never validates there, so the extended run must not select it either."""
    recipe = write_recipe(tmp_path / "tiny.yaml")
    direct, extended = tmp_path / "direct", tmp_path / "extended"
    code, output = invoke(["run", recipe, "--output", direct, "--set", "train.iterations=9"])
    assert code == 0, output
    code, output = invoke(["run", recipe, "--output", extended,
                           "--set", f"train.iterations={first_total}"])
    assert code == 0, output
    first = json.loads((extended / "metrics.json").read_text())
    assert first["selected"]["step"] in (3, first_total)  # the last step was a candidate then
    code, output = invoke(["resume", extended, "--set", "train.iterations=9"])
    assert code == 0, output
    for name in ("predictions.csv", "test_labels.csv"):
        assert (extended / name).read_bytes() == (direct / name).read_bytes(), name
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (direct, extended))
    for key in ("selected", "validation", "test", "test_components", "best_validation_step"):
        assert a.get(key) == b.get(key), key


def test_a_last_step_off_the_cadence_that_beats_best_pt_is_reported_as_the_last_weights(tmp_path):
    from synergic.recipe import load_recipe
    from synergic.serving import evaluate_run

    # eval_every=0: the only validation is the last step's, so the last weights are selected.
    recipe = write_recipe(tmp_path / "tiny.yaml", **{"train.eval_every": 0})
    code, output = invoke(["run", recipe, "--output", tmp_path / "run"])
    assert code == 0, output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["selected"]["checkpoint"] == "last" and metrics["selected"]["step"] == 6
    assert metrics["selected"]["value"] == metrics["validation"]["ap"]
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()
    assert load_recipe(tmp_path / "run" / "recipe.yaml").train.select == "auto"
    again = evaluate_run(tmp_path / "run", checkpoint="last")
    assert again["aggregate"]["auc"] == pytest.approx(metrics["test"]["auc"], abs=1e-12)


def test_a_missing_gpu_is_reported_before_any_image_is_decoded(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    recipe = write_recipe(tmp_path / "tiny.yaml", **{"train.device": "cuda"})
    for command in (["recipe", "check", recipe], ["run", recipe, "--output", tmp_path / "run"]):
        code, output = invoke(command)
        assert code == 1
        (line,) = error_lines(output)
        assert "train.device is 'cuda' but no CUDA GPU is available" in line
        assert "preparing data" not in output
    assert not (tmp_path / "run").exists()



def test_same_names_and_labels_with_other_pixels_are_told_apart(tmp_path):
    from synergic.compare import compare_runs
    from synergic.errors import SynergicError

    make_folder_dataset(tmp_path / "copy1", seed=0)
    make_folder_dataset(tmp_path / "copy2", seed=1)
    recipe = write_recipe(tmp_path / "tiny.yaml", **{"data.dataset": "folder", "data.options": {},
                                                     "data.root": str(tmp_path / "copy1")})
    code, output = invoke(["run", recipe, "--output", tmp_path / "a", "--set", "train.iterations=2"])
    assert code == 0, output
    code, output = invoke(["run", recipe, "--output", tmp_path / "b", "--set", "train.iterations=2",
                           "--set", f"data.root={tmp_path / 'copy2'}"])
    assert code == 0, output
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text())["data"] for d in "ab")
    assert a["fingerprint"] == b["fingerprint"]  # the names and labels are the same...
    assert a["pixels"]["test"] != b["pixels"]["test"]  # ...the images are not
    assert a["pixels"]["validation"] is not None
    with pytest.raises(SynergicError, match="the same image names and labels, but other pixels"):
        compare_runs(tmp_path / "a", tmp_path / "b")
    # Resuming run a on the other copy is refused too, once the images are decoded.
    code, output = invoke(["resume", tmp_path / "a", "--set", "train.iterations=4",
                           "--set", f"data.root={tmp_path / 'copy2'}"])
    assert code == 1
    (line,) = error_lines(output)
    assert "the train, validation, test images have the same names and labels" in line
