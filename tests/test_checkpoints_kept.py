"""Which checkpoints a finished run keeps (``train.keep_checkpoints``), and weights-only ``best.pt``.

Every run here is the tiny recipe (about a second, one torch thread). A run whose best validation
step is before its last step is found by trying seeds, so ``best.pt`` and ``last.pt`` differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import SigtermAtLog, error_lines, invoke
from tiny_recipe import write_recipe

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def checkpoint_files(run_dir: Path) -> list[str]:
    folder = run_dir / "checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture(scope="module")
def best_before_last_seed(tmp_path_factory) -> int:
    """A seed whose tiny run (validation at every step) selects a best step before the last."""
    folder = tmp_path_factory.mktemp("seed")
    for seed in range(8):
        recipe = write_recipe(folder / f"tiny{seed}.yaml", seed=seed, **{"train.eval_every": 1})
        code, output = invoke(["run", recipe, "--output", folder / f"run{seed}"])
        assert code == 0, output
        metrics = json.loads((folder / f"run{seed}" / "metrics.json").read_text())
        if metrics["selected"]["step"] != metrics["iterations"]:
            return seed
    pytest.fail("no seed gave a best validation step before the last step")


def finished_run(folder: Path, seed: int, **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    recipe = write_recipe(folder / "tiny.yaml", seed=seed, **{"train.eval_every": 1, **changes})
    run_dir = folder / "run"
    code, output = invoke(["run", recipe, "--output", run_dir])
    assert code == 0, output
    return run_dir


# -- weights-only best.pt ---------------------------------------------------------------------


def test_best_pt_holds_the_weights_and_their_record_but_nothing_to_resume(tmp_path, best_before_last_seed):
    from synergic.training.checkpoint import TRAINING_STATE_KEYS, is_resumable, load_checkpoint

    run_dir = finished_run(tmp_path, best_before_last_seed)
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert not set(TRAINING_STATE_KEYS) & set(best) and best["weights_only"] is True
    assert set(best) >= {"model", "step", "best_metric", "best_step", "validation_history",
                         "metadata", "synergic_version"}
    assert best["metadata"]["preprocessing"] == last["metadata"]["preprocessing"]
    assert best["step"] == best["best_step"] < last["step"]
    assert is_resumable(last) and not is_resumable(best)
    # The tiny recipe has momentum 0.9: last.pt also holds a momentum buffer per weight.
    sizes = {name: (run_dir / "checkpoints" / f"{name}.pt").stat().st_size for name in ("best", "last")}
    assert sizes["best"] < 0.6 * sizes["last"], sizes


def test_weights_only_best_pt_evaluates_to_the_reported_metrics(tmp_path, best_before_last_seed):
    from synergic.serving import evaluate_run

    run_dir = finished_run(tmp_path, best_before_last_seed)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["selected"]["checkpoint"] == "best"
    again = evaluate_run(run_dir, checkpoint="best")
    for name, value in again["aggregate"].items():
        assert value == pytest.approx(metrics["test"][name], abs=1e-9), name


def test_resuming_from_a_weights_only_checkpoint_says_to_use_last_pt(tmp_path, best_before_last_seed):
    import shutil

    run_dir = finished_run(tmp_path, best_before_last_seed)
    shutil.copy(run_dir / "checkpoints" / "best.pt", run_dir / "checkpoints" / "last.pt")
    code, output = invoke(["resume", run_dir, "--set", "train.iterations=8"])
    assert code == 1
    (line,) = error_lines(output)
    assert line == (
        "error: the checkpoint holds weights only (best.pt is written without optimiser and "
        "random states): resume from last.pt"
    )


# -- what each value keeps --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keep", "select", "files"),
    [
        ("auto", "auto", ["best.pt", "last.pt"]),
        ("all", "auto", ["best.pt", "last.pt"]),
        ("selected", "auto", ["best.pt"]),      # the reported model is best.pt
        ("selected", "last", ["last.pt"]),
        ("none", "auto", []),
    ],
)
def test_each_value_keeps_its_checkpoints_after_a_finished_run(
    tmp_path, best_before_last_seed, keep, select, files
):
    run_dir = finished_run(
        tmp_path, best_before_last_seed,
        **{"train.keep_checkpoints": keep, "train.select": select},
    )
    assert checkpoint_files(run_dir) == files
    assert not (run_dir / "checkpoints").exists() or files  # no empty folder left behind
    for result in ("metrics.json", "predictions.csv", "test_labels.csv", "recipe.yaml"):
        assert (run_dir / result).is_file(), result
    record = json.loads((run_dir / "run.json").read_text())["checkpoints"]
    assert record["keep"] == keep
    assert sorted(f"{name}.pt" for name in record["kept"]) == files
    assert sorted(f"{name}.pt" for name in record["removed"]) == sorted(
        {"best.pt", "last.pt"} - set(files)
    )


def test_an_interrupted_run_keeps_last_pt_whatever_the_setting(tmp_path):
    """Pruning happens only after success: a stopped run must stay resumable."""
    from synergic.experiment import run
    from synergic.recipe import load_recipe
    from synergic.training.trainer import TrainingInterrupted

    recipe = load_recipe(write_recipe(tmp_path / "tiny.yaml", **{"train.keep_checkpoints": "none"}))
    with pytest.raises(TrainingInterrupted):
        run(recipe, tmp_path / "run", callbacks=[SigtermAtLog(step=4)])
    assert "last.pt" in checkpoint_files(tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert "checkpoints" not in json.loads((tmp_path / "run" / "run.json").read_text())
    code, output = invoke(["resume", tmp_path / "run"])
    assert code == 0, output
    assert checkpoint_files(tmp_path / "run") == []  # pruned once it finished


@pytest.mark.parametrize(
    ("keep", "selected", "kept"),
    [("auto", "best", ("last", "best")), ("all", "last", ("last", "best")),
     ("selected", "best", ("best",)), ("selected", "last", ("last",)), ("none", "best", ())],
)
def test_kept_checkpoints(keep, selected, kept):
    from synergic.rundir import kept_checkpoints

    assert kept_checkpoints(keep, selected) == kept


def test_kept_checkpoints_refuses_an_unknown_value():
    from synergic.rundir import kept_checkpoints

    with pytest.raises(ValueError, match="keep_checkpoints must be auto, all, selected or none"):
        kept_checkpoints("best", "best")


def test_the_recipe_refuses_an_unknown_value(tmp_path):
    code, output = invoke(["run", write_recipe(tmp_path / "tiny.yaml"), "--output",
                           tmp_path / "run", "--set", "train.keep_checkpoints=both"])
    assert code == 1
    (line,) = error_lines(output)
    assert "train.keep_checkpoints" in line
    assert not (tmp_path / "run").exists()


# -- extend, eval and predict after pruning ------------------------------------------------------


def test_the_default_keeps_a_finished_run_extendable(tmp_path, best_before_last_seed):
    """Extending with the default is the run trained for the new total from the start."""
    run_dir = finished_run(tmp_path / "a", best_before_last_seed)
    code, output = invoke(["resume", run_dir, "--set", "train.iterations=8"])
    assert code == 0, output
    straight = finished_run(tmp_path / "b", best_before_last_seed, **{"train.iterations": 8})
    extended = json.loads((run_dir / "metrics.json").read_text())
    assert extended["iterations"] == 8
    assert (run_dir / "predictions.csv").read_bytes() == (straight / "predictions.csv").read_bytes()
    assert checkpoint_files(run_dir) == ["best.pt", "last.pt"]


def test_a_run_whose_last_pt_was_not_kept_refuses_to_resume(tmp_path, best_before_last_seed):
    run_dir = finished_run(tmp_path, best_before_last_seed, **{"train.keep_checkpoints": "selected"})
    before = (run_dir / "metrics.json").read_bytes()
    code, output = invoke(["resume", run_dir, "--set", "train.iterations=8"])
    assert code == 1
    (line,) = error_lines(output)
    assert f"cannot resume {run_dir}: its checkpoints/last.pt" in line
    assert "was not kept, as train.keep_checkpoints is 'selected'" in line
    assert "start a new run with --output" in line
    assert (run_dir / "metrics.json").read_bytes() == before  # nothing retrained or deleted
    assert checkpoint_files(run_dir) == ["best.pt"]


def test_eval_and_predict_say_which_checkpoint_was_kept(tmp_path, best_before_last_seed):
    run_dir = finished_run(tmp_path, best_before_last_seed, **{"train.keep_checkpoints": "selected"})
    code, output = invoke(["eval", run_dir])  # the selected checkpoint is still there
    assert code == 0, output
    expected = (
        f"error: {run_dir}/checkpoints/last.pt was not kept: train.keep_checkpoints is "
        f"'selected', which removed it after the run finished; {run_dir}/checkpoints/best.pt "
        "exists: use --checkpoint best"
    )
    code, output = invoke(["eval", run_dir, "--checkpoint", "last"])
    assert code == 1 and error_lines(output) == [expected], output
    image = tmp_path / "one.png"
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 120, 90)).save(image)
    code, output = invoke(["predict", run_dir, image, "--checkpoint", "last"])
    assert code == 1 and error_lines(output) == [expected], output


def test_eval_of_a_run_that_kept_none_says_where_its_results_are(tmp_path, best_before_last_seed):
    run_dir = finished_run(tmp_path, best_before_last_seed, **{"train.keep_checkpoints": "none"})
    code, output = invoke(["eval", run_dir])
    assert code == 1
    (line,) = error_lines(output)
    assert "best.pt was not kept: train.keep_checkpoints is 'none'" in line
    assert "no checkpoint of this run exists (its results stay in metrics.json" in line


def test_keep_checkpoints_is_result_neutral(tmp_path):
    from synergic.recipe import load_recipe
    from synergic.rundir import identity_differences, identity_hash

    path = write_recipe(tmp_path / "tiny.yaml")
    plain = load_recipe(path)
    changed = load_recipe(path, ["train.keep_checkpoints=none"])
    assert changed.train.keep_checkpoints == "none"
    assert identity_differences(plain, changed) == []
    assert identity_hash(plain) == identity_hash(changed)
    # ...so a run may be resumed with another value (and eval may --set it).
    assert identity_differences(plain, load_recipe(path, ["train.select=last"])) != []


# -- sweeps -------------------------------------------------------------------------------------


def test_a_sweeps_runs_keep_the_sweep_default_unless_the_recipe_says_otherwise(tmp_path):
    from synergic.sweep import KEEP_CHECKPOINTS_MANY_RUNS, plan_sweep

    recipe = write_recipe(tmp_path / "tiny.yaml")
    runs = plan_sweep(recipe, ["train.synergic_weight=0,3"], seeds=2, output=tmp_path / "s")
    assert {r.recipe.train.keep_checkpoints for r in runs} == {KEEP_CHECKPOINTS_MANY_RUNS}
    explicit = plan_sweep(recipe, ["train.synergic_weight=0,3"], output=tmp_path / "s",
                          overrides=["train.keep_checkpoints=all"])
    assert {r.recipe.train.keep_checkpoints for r in explicit} == {"all"}
    none = plan_sweep(write_recipe(tmp_path / "none.yaml", **{"train.keep_checkpoints": "none"}),
                      output=tmp_path / "s")
    assert none[0].recipe.train.keep_checkpoints == "none"


def test_a_finished_sweep_cell_keeps_only_its_reported_checkpoint(tmp_path):
    from synergic.sweep import run_sweep, run_state

    output = tmp_path / "sweep"
    recipe = write_recipe(tmp_path / "tiny.yaml")
    summary = run_sweep(recipe, ["train.synergic_weight=3"], output=output)
    (cell,) = summary["cells"]
    run_dir = output / cell["runs"][0]["run_dir"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert checkpoint_files(run_dir) == [f"{metrics['selected']['checkpoint']}.pt"]
    saved = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert saved["train"]["keep_checkpoints"] == "selected"  # the run's record says what it kept
    assert run_state(run_dir) == "finished"
    events = []
    run_sweep(recipe, ["train.synergic_weight=3"], output=output,
              on_event=lambda action, run, i, n: events.append(action))
    assert events == ["skip"]  # a pruned run is still a finished one
