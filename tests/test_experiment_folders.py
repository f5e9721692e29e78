"""A folder holds one experiment (issue 15, from a new user's test of cv and sweep): what a folder
holds (synergic.folders.folder_kind), cv and sweep refusing another kind's folder before writing,
cells of an earlier grid named and kept out of the summary and the report, every Ctrl-C of cv and
sweep answered with how to continue (exit 130), and the docs' list of result-neutral keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import error_lines, invoke

from synergic.folders import KIND_NAMES, folder_kind, unplanned_runs

# 3 steps per run, a checkpoint after the second: a run of the tiny recipe takes about a second.
FAST = ["train.iterations=3", "train.eval_every=3", "train.checkpoint_every=2"]
SETS = [a for o in [*FAST, "train.n_bootstrap=0"] for a in ("--set", o)]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_run(folder: Path) -> Path:
    touch(folder / "recipe.yaml", "name: tiny\n")
    touch(folder / "metrics.json", "{}")
    return folder


def make(kind: str, folder: Path, finished: bool = True) -> Path:
    """A folder as each command leaves it (``finished``: with its summary.json), without
    training: the layout is what :func:`folder_kind` reads."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "run":
        make_run(folder)
    elif kind == "cv":
        make_run(folder / "repeat-0" / "fold-0")
        if finished:
            touch(folder / "summary.json", json.dumps({"folds": 2, "test": {}, "runs": []}))
    elif kind == "cv_sweep":
        make_run(folder / "a=1" / "repeat-0" / "fold-0")
        if finished:
            touch(folder / "summary.json", json.dumps({"folds": 2, "cells": []}))
    elif kind == "sweep":
        make_run(folder / "a=1" / "seed0")
        if finished:
            touch(folder / "summary.json", json.dumps({"seeds": 1, "cells": []}))
    elif kind == "runs":
        make_run(folder / "demo" / "20260101-120000")
    elif kind == "other":
        touch(folder / "notes.txt")
    return folder


@pytest.mark.parametrize("finished", [True, False])
@pytest.mark.parametrize("kind", ["run", "cv", "cv_sweep", "sweep", "runs", "other"])
def test_folder_kind_tells_each_experiment_from_its_summary_or_its_layout(kind, finished,
                                                                          tmp_path):
    assert folder_kind(make(kind, tmp_path / "d", finished)) == kind


def test_an_empty_folder_or_one_with_only_hidden_files_is_empty(tmp_path):
    assert folder_kind(tmp_path / "missing") == "empty"
    touch(tmp_path / "d" / ".submitit" / "job.out")  # the slurm launcher's, before any run
    assert folder_kind(tmp_path / "d") == "empty"
    # a sweep's cell whose first run has not written a file yet is still a sweep
    (tmp_path / "s" / "a=1" / "seed0").mkdir(parents=True)
    assert folder_kind(tmp_path / "s") == "sweep"
    # a folder of runs that also holds a cross-validation is a folder of runs
    make("cv", make("runs", tmp_path / "r") / "demo-cv")
    assert folder_kind(tmp_path / "r") == "runs"


@pytest.mark.parametrize("command, kind", [
    (["cv", "--folds", "2"], "run"),
    (["cv", "--folds", "2"], "sweep"),
    (["cv", "--folds", "2"], "cv_sweep"),
    (["cv", "--folds", "2"], "runs"),
    (["cv", "--folds", "2"], "other"),
    (["sweep", "--grid", "train.synergic_weight=0,3", "--folds", "2"], "cv"),
    (["sweep", "--grid", "train.synergic_weight=0,3", "--folds", "2"], "sweep"),
    (["sweep", "--grid", "train.synergic_weight=0,3", "--folds", "2"], "run"),
    (["sweep", "--grid", "train.synergic_weight=0,3"], "cv"),
    (["sweep", "--grid", "train.synergic_weight=0,3"], "cv_sweep"),
    (["sweep", "--grid", "train.synergic_weight=0,3"], "run"),
])
def test_cv_and_sweep_refuse_a_folder_of_another_experiment_before_writing(
    command, kind, tiny_recipe, tmp_path
):
    folder = make(kind, tmp_path / "d")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    code, output = invoke([command[0], tiny_recipe, *command[1:], *SETS, "--output", folder])
    assert code == 1, output
    expected = ("holds files that are not a synergic run" if kind == "other" else
                f"holds a {KIND_NAMES[kind]}: use another --output")
    assert error_lines(output) == [line for line in output.splitlines() if line.strip()]
    assert len(error_lines(output)) == 1 and expected in output and str(folder) in output
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_a_sweep_rerun_with_another_grid_names_the_cells_it_keeps_and_report_leaves_them_out(
    tiny_recipe, tmp_path
):
    folder = tmp_path / "lambda"
    code, output = invoke(["sweep", tiny_recipe, "--grid", "train.synergic_weight=0,3", *SETS,
                           "--output", folder])
    assert code == 0, output
    assert "not part of this sweep" not in output
    code, output = invoke(["sweep", tiny_recipe, "--grid", "train.synergic_weight=0", *SETS,
                           "--output", folder])
    assert code == 0, output
    assert ("kept, not part of this sweep: train.synergic_weight=3 (runs of an earlier grid in "
            "this folder; summary and report leave them out)") in output
    summary = json.loads((folder / "summary.json").read_text())
    assert [cell["cell"] for cell in summary["cells"]] == ["train.synergic_weight=0"]
    assert summary["not_in_sweep"] == ["train.synergic_weight=3"]
    assert "not part of this sweep: `train.synergic_weight=3`" in (
        folder / "summary.md").read_text()
    assert (folder / "train.synergic_weight=3" / "seed0" / "metrics.json").is_file()  # kept

    code, output = invoke(["report", folder, "--no-paper"])
    assert code == 0, output
    assert f"report: {folder / 'report.md'} (1 row)" in output
    note = (f"{folder / 'train.synergic_weight=3'} is in the sweep folder but not part of its "
            "sweep (summary.json): left out")
    assert note in output
    report = (folder / "report.md").read_text()
    assert "train.synergic_weight=3/seed0" not in report.split("## Notes")[0]


def test_unplanned_runs_names_a_whole_cell_once_and_single_extra_seeds(tmp_path):
    make_run(tmp_path / "a=1" / "seed0")
    make_run(tmp_path / "a=1" / "seed1")
    make_run(tmp_path / "a=2" / "seed0")
    make_run(tmp_path / "a=2" / "seed1")
    touch(tmp_path / "summary.json", "{}")
    planned = [tmp_path / "a=1" / "seed0"]
    assert unplanned_runs(tmp_path, planned) == ["a=1/seed1", "a=2"]


# ------------------------------------------------------------------------------- interruptions


def test_ctrl_c_in_a_folds_evaluation_says_how_to_continue_and_exits_130(
    tiny_recipe, tmp_path, monkeypatch
):
    import synergic.experiment

    def evaluation_interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C outside the training loop: decoding, test evaluation

    monkeypatch.setattr(synergic.experiment, "run", evaluation_interrupted)
    code, output = invoke(["cv", tiny_recipe, "--folds", "2", *SETS, "--output", tmp_path / "cv"])
    assert code == 130, output
    assert error_lines(output) == [
        "error: cv stopped in repeat 0 fold 0 (interrupted by Ctrl-C outside training; the run "
        "resumes from its last checkpoint): run the same cv command again to continue"
    ]
    assert "aborted" not in output
    code, output = invoke(["sweep", tiny_recipe, "--grid", "train.synergic_weight=0,3", *SETS,
                           "--output", tmp_path / "sweep"])
    assert code == 130, output
    assert error_lines(output) == [
        "error: sweep stopped in cell train.synergic_weight=0 seed 0 (interrupted by Ctrl-C "
        "outside training; the run resumes from its last checkpoint): run the same sweep "
        "command again to continue"
    ]


def test_ctrl_c_between_runs_says_how_to_continue_and_exits_130(tiny_recipe, tmp_path,
                                                                 monkeypatch):
    import synergic.cv
    import synergic.experiment

    def summary_interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synergic.experiment, "run", lambda *args, **kwargs: None)
    monkeypatch.setattr(synergic.cv, "finish_cv", summary_interrupted)
    code, output = invoke(["cv", tiny_recipe, "--folds", "2", *SETS, "--output", tmp_path / "cv"])
    assert code == 130, output
    assert error_lines(output) == [
        "error: cv stopped (interrupted by Ctrl-C between runs; finished runs are kept): run "
        "the same cv command again to continue"
    ]


def test_ctrl_c_in_training_exits_130_and_sigterm_1_with_how_to_continue(
    tiny_recipe, tmp_path, monkeypatch
):
    import synergic.experiment
    from synergic.training.trainer import TrainingInterrupted

    for signal_name, code_wanted in (("SIGINT", 130), ("SIGTERM", 1)):
        def stopped(*args, signal_name=signal_name, **kwargs):
            raise TrainingInterrupted(f"stopped by {signal_name} at step 2; checkpoint saved: "
                                      "resume to continue", signal_name)

        monkeypatch.setattr(synergic.experiment, "run", stopped)
        code, output = invoke(["cv", tiny_recipe, "--folds", "2", *SETS,
                               "--output", tmp_path / signal_name])
        assert code == code_wanted, output
        assert error_lines(output) == [
            f"error: cv stopped in repeat 0 fold 0 (stopped by {signal_name} at step 2; "
            "checkpoint saved: resume to continue): run the same cv command again to continue"
        ]


def test_the_trainer_stopped_by_ctrl_c_records_the_signal(tmp_path):
    import os
    import signal

    from test_trainer import make_trainer

    from synergic.training.trainer import TrainingInterrupted

    class PressCtrlC:
        def on_log(self, trainer, row):
            if row["step"] == 1:
                os.kill(os.getpid(), signal.SIGINT)

    trainer = make_trainer(iterations=4, log_every=1, checkpoint_dir=tmp_path,
                           callbacks=[PressCtrlC()])
    with pytest.raises(TrainingInterrupted) as stop:
        trainer.fit()
    assert stop.value.signal == "SIGINT" and stop.value.exit_code == 130


# ------------------------------------------------------------------------------------ cosmetics


def test_the_cv_and_sweep_titles_print_as_one_line_outside_a_terminal(capsys):
    from synergic.cli.cv import _print_summary as print_cv
    from synergic.cli.experiments import _print_summary as print_sweep

    stat = {"mean": 0.5, "std": 0.1, "n": 2, "values": [0.4, 0.6], "ci": [0.0, 1.0]}
    print_cv({"recipe": "a/very/long/path/to/a/recipe/file/named/like/this.yaml", "folds": 5,
              "repeats": 2, "group_by": "lesion", "runs": [{}] * 10, "test": {"ap": stat},
              "oof_predictions": "oof_predictions.csv"}, Path("runs/cv"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("cross-validation of a/very/long/path/to/a/recipe/file/named/like/"
                        "this.yaml: 5 folds x 2 repeats, grouped by lesion")
    print_sweep({"recipe": "a/very/long/path/to/a/recipe/file/named/like/this.yaml",
                 "select_metric": "ap", "folds": 2, "repeats": 1, "selected": None,
                 "selection_note": "none", "cells": [{"cell": "a=1", "runs": [{}, {}],
                                                      "validation": None, "test": {"ap": stat}}]},
                Path("runs/s"))
    title = capsys.readouterr().out.splitlines()[0]
    assert title.startswith("sweep of a/very/long/path/to/a/recipe/file/named/like/this.yaml, "
                            "each cell a cross-validation") and title.endswith("fold runs")


def test_a_report_of_cross_validations_only_counts_them_and_an_empty_folder_names_every_layout(
    tmp_path
):
    from test_report_cv_lambda import write_cv_sweep

    folder = write_cv_sweep(tmp_path / "lambda-cv")
    code, output = invoke(["report", folder])
    assert code == 0, output
    assert f"report: {folder / 'report.md'} (3 cross-validations)" in output
    (tmp_path / "empty").mkdir()
    code, output = invoke(["report", tmp_path / "empty"])
    assert code == 1
    assert len(error_lines(output)) == 1
    for layout in ("metrics.json", "<cell>/seed<k>/", "repeat-R/fold-F/",
                   "<cell>/repeat-R/fold-F/"):
        assert layout in output


# ----------------------------------------------------------------------------------------- docs


@pytest.mark.parametrize("page", ["experiments.md", "checkpoints.md"])
def test_the_docs_list_exactly_the_result_neutral_keys(page):
    from synergic.rundir import RESULT_NEUTRAL_KEYS

    text = (Path(__file__).parents[1] / "docs" / page).read_text(encoding="utf-8")
    marker = "(`synergic.rundir.RESULT_NEUTRAL_KEYS`"
    assert marker in text
    listed = text[:text.index(marker)].rsplit(":", 1)[1]  # from the colon that opens the list
    keys = re.findall(r"`([a-z_.]+)`", listed)
    assert keys == list(RESULT_NEUTRAL_KEYS)


# ------------------------------------------------------------------- out-of-fold comparisons


def test_compare_two_cross_validations_pairs_their_out_of_fold_predictions(tiny_recipe,
                                                                           tmp_path):
    import numpy as np
    from helpers import read_csv
    from sklearn.metrics import roc_auc_score

    folder = tmp_path / "lambda-cv"
    code, output = invoke(["sweep", tiny_recipe, "--grid", "train.synergic_weight=0,3",
                           "--folds", "2", *SETS,
                           "--output", folder])
    assert code == 0, output
    cv_a, cv_b = folder / "train.synergic_weight=0", folder / "train.synergic_weight=3"
    code, output = invoke(["compare", cv_a, cv_b, "--json", "--n-bootstrap", "50"])
    assert code == 0, output
    result = json.loads(output)
    assert result["metric"] == "auc" and len(result["repeats"]) == 1
    repeat = result["repeats"][0]
    # Independently: scikit-learn's AUC of each pooled out-of-fold column against the labels
    # the fold runs were tested on.
    labels = {row[0]: row[1] for run in (cv_a / "repeat-0").iterdir()
              for row in read_csv(run / "test_labels.csv")[1:]}
    for key, cv in (("a", cv_a), ("b", cv_b)):
        rows = read_csv(cv / "oof_predictions.csv")[1:]
        truth = np.array([labels[row[0]] == "malignant" or labels[row[0]] == "1" for row in rows])
        assert repeat[key] == pytest.approx(roc_auc_score(truth, [float(r[4]) for r in rows]))
    assert repeat["images"] == len(labels) == result["images"]
    assert repeat["difference"] == pytest.approx(repeat["b"] - repeat["a"])
    assert 0 <= repeat["p_value"] <= 1 and repeat["ci"][0] <= repeat["ci"][1]

    code, output = invoke(["report", folder, "--no-paper", "--n-bootstrap", "50", "--json"])
    assert code == 0, output
    report = (folder / "report.md").read_text()
    section = report.split("### SDL vs ensemble on the out-of-fold predictions (paired)")[1]
    assert (f"| train.synergic_weight=0 | train.synergic_weight=3 | 0 | {repeat['images']} | "
            f"AUC | {repeat['a']:.4f} | {repeat['b']:.4f} |") in section
    # --json carries the same comparison: synergic compare's, plus the sweep and its cells.
    (shown,) = json.loads(output)["cv_comparisons"]
    assert shown == {**result, "cv_a": str(cv_a), "cv_b": str(cv_b), "sweep": str(folder),
                     "ensemble": "train.synergic_weight=0", "sdl": "train.synergic_weight=3"}

    # Other folds: refused in one line, naming the image.
    rows = read_csv(cv_b / "oof_predictions.csv")
    moved = rows[1][0]
    rows[1][1] = "1" if rows[1][1] == "0" else "0"
    (cv_b / "oof_predictions.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
    code, output = invoke(["compare", cv_a, cv_b])
    assert code == 1 and len(error_lines(output)) == 1
    assert f"their folds differ (image '{moved}' is in fold" in output
    code, output = invoke(["compare", cv_a, cv_a / "repeat-0" / "fold-0"])
    assert code == 1 and "give two runs, or two cross-validations" in output


@pytest.mark.parametrize("flag", [[], ["--overwrite"], ["--resume"]])
@pytest.mark.parametrize("kind", ["cv", "cv_sweep", "sweep", "runs"])
def test_run_names_the_experiment_its_output_folder_holds_and_leaves_it_alone(
    kind, flag, tiny_recipe, tmp_path
):
    folder = make(kind, tmp_path / "d")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    code, output = invoke(["run", tiny_recipe, *SETS, "--output", folder, *flag])
    assert code == 1, output
    assert len(error_lines(output)) == 1
    assert f"output directory {folder} holds a {KIND_NAMES[kind]}: use another --output" in output
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
