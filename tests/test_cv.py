"""Cross-validation (issue 15, item 3): the folds against scikit-learn, the t-interval against
scipy's one-sample t test, a fold as a run (its test set, recipe and fingerprint), the summary and
out-of-fold predictions, resuming after SIGKILL, grouped folds, and the submitit launcher."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedGroupKFold

from synergic.cv import fold_indices, plan_cv, run_cv, t_interval
from synergic.errors import SynergicError
from synergic.recipe import load_recipe, recipe_to_yaml
from synergic.rundir import read_splits
from synergic.sweep import SweepCellError, mean_std, run_state

SUBPROCESS_ENV = {
    **os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "SYNERGIC_DISABLE_PLUGINS": "1",
}
# 3 steps per fold, a checkpoint after the second: a fold run of the tiny recipe takes a second.
FAST = ["train.iterations=3", "train.eval_every=3", "train.checkpoint_every=2"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


# ------------------------------------------------------------------------------------- the folds


def test_folds_are_sklearns_repeated_stratified_kfold():
    labels = [0] * 13 + [1] * 5 + [2] * 7
    reference = list(RepeatedStratifiedKFold(n_splits=4, n_repeats=3, random_state=11).split(
        np.zeros(len(labels)), labels
    ))
    for repeat in range(3):
        pairs = fold_indices(labels, folds=4, repeat=repeat, seed=11)
        expected = reference[4 * repeat: 4 * repeat + 4]
        assert [(list(a), list(b)) for a, b in pairs] == [
            (sorted(a.tolist()), sorted(b.tolist())) for a, b in expected
        ]
        held_out = [i for _, fold in pairs for i in fold]
        assert sorted(held_out) == list(range(len(labels)))  # each image held out exactly once
        for train, fold in pairs:
            assert set(train).isdisjoint(fold) and len(train) + len(fold) == len(labels)
            counts = Counter(labels[i] for i in fold)
            for label, total in Counter(labels).items():  # stratified: within one image
                assert abs(counts[label] - total / 4) < 1
    assert fold_indices(labels, folds=4, repeat=1, seed=11) != fold_indices(labels, folds=4,
                                                                            seed=11)
    assert fold_indices(labels, folds=4, seed=12) != fold_indices(labels, folds=4, seed=11)


def test_grouped_folds_keep_each_group_in_one_fold():
    rng = np.random.default_rng(3)
    groups = [f"p{g}" for g in rng.integers(0, 12, size=60)]
    labels = [int(g[1:]) % 3 == 0 for g in groups]  # a patient's images share a label
    pairs = fold_indices(labels, folds=3, seed=5, groups=groups)
    for train, fold in pairs:
        assert {groups[i] for i in train}.isdisjoint({groups[i] for i in fold})
    reference = StratifiedGroupKFold(n_splits=3, shuffle=True,
                                     random_state=np.random.RandomState(5))
    expected = reference.split(np.zeros(60), np.asarray(labels, dtype=int), groups)
    assert [fold for _, fold in pairs] == [sorted(f.tolist()) for _, f in expected]


@pytest.mark.parametrize("labels, folds, groups, words", [
    ([0, 0, 0, 1, 1], 3, None, r"class 1 has 2 training images, fewer than the 3 folds.*--folds 2"),
    ([0, 0, 0, 1], 2, None, r"class 1 has 1 training image, fewer"),
    ([0, 1] * 4, 1, None, "at least 2"),
    ([0, 1] * 4, 3, ["a", "a", "a", "a", "b", "b", "b", "b"], "2 groups, fewer than the 3 folds"),
    ([0, 0, 0, 0, 1, 1, 1, 1], 2, ["a", "a", "a", "a", "b", "b", "c", "c"],
     "holds no image of class"),
])
def test_folds_that_cannot_be_made_are_one_line_errors(labels, folds, groups, words):
    with pytest.raises(SynergicError, match=words) as error:
        fold_indices(labels, folds=folds, groups=groups)
    assert "\n" not in str(error.value)


def test_t_interval_is_scipys_one_sample_t_interval():
    values = [0.71, 0.64, 0.80, 0.77, 0.69]
    expected = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    assert t_interval(values) == pytest.approx([expected.low, expected.high], abs=1e-12)
    mean, s = np.mean(values), np.std(values, ddof=1)
    half = stats.t.ppf(0.975, 4) * s / np.sqrt(5)  # the textbook formula
    assert t_interval(values) == pytest.approx([mean - half, mean + half], abs=1e-12)
    assert t_interval([0.5]) is None and t_interval([]) is None
    assert t_interval([0.5, 0.5, 0.5]) == [0.5, 0.5]


# ---------------------------------------------------------------------------- the fold in a recipe


def test_the_fold_is_a_recipe_key_absent_from_recipes_without_cross_validation():
    demo = load_recipe("demo")
    assert "cross_validation" not in demo.model_dump(mode="json")["data"]
    assert "cross_validation" not in recipe_to_yaml(demo)  # old runs keep their identity
    fold = load_recipe("demo", ["data.cross_validation={folds: 5, fold: 4, repeat: 1}"])
    assert recipe_to_yaml(fold).count("cross_validation:") == 1
    for override, words in [
        ("data.cross_validation={folds: 3, fold: 3}", "fold 3 does not exist: folds are 0 to 2"),
        ("data.cross_validation={folds: 1}", "0 .* or at least 2"),
        ("data.cross_validation={fold: 2}", "folds is 0 .* must stay unset"),
    ]:
        with pytest.raises(SynergicError, match=words):
            load_recipe("demo", [override])


def test_plan_gives_each_fold_its_recipe_and_folder(tiny_recipe, tmp_path):
    plan = plan_cv(tiny_recipe, folds=3, repeats=2, overrides=["seed=4"], output=tmp_path / "cv")
    assert [r.run_dir.relative_to(tmp_path / "cv").as_posix() for r in plan.runs] == [
        f"repeat-{r}/fold-{f}" for r in range(2) for f in range(3)
    ]
    assert [r.label for r in plan.runs[:2]] == ["repeat 0 fold 0", "repeat 0 fold 1"]
    config = plan.runs[4].recipe.data.cross_validation
    assert (config.folds, config.repeat, config.fold, config.seed, config.group_by) == (
        3, 1, 1, 4, None
    )
    assert all(r.recipe.seed == 4 for r in plan.runs)  # every fold trains with the recipe's seed
    assert plan.runs[0].recipe.train.keep_checkpoints == "selected"  # many runs: the reported one
    with pytest.raises(SynergicError, match="already fold 1 of a cross-validation"):
        plan_cv(plan.runs[1].recipe, folds=3, output=tmp_path / "again")
    with pytest.raises(SynergicError,
                       match=r"class 0 \(benign\) has 1[0-9] training images, fewer than"):
        plan_cv(tiny_recipe, folds=20, output=tmp_path / "too-many")
    assert not (tmp_path / "too-many").exists() and not (tmp_path / "cv").exists()


# -------------------------------------------------------------------- running, summary, oof


def test_cross_validation_runs_each_fold_as_a_run_and_summarises(tiny_recipe, tmp_path):
    from click.testing import CliRunner

    from synergic.cli import cli

    output = tmp_path / "cv"
    result = CliRunner().invoke(cli, ["cv", str(tiny_recipe), "--folds", "3", "--output",
                                      str(output), *(a for o in FAST for a in ("--set", o))])
    assert result.exit_code == 0, result.output
    assert "95 % t-interval" in result.output and "oof_predictions.csv" in result.output
    summary = json.loads((output / "summary.json").read_text())
    plan = plan_cv(tiny_recipe, folds=3, overrides=FAST, output=output)
    training = load_recipe(tiny_recipe, FAST)
    from synergic.experiment import open_datasets

    train_split = open_datasets(plan.runs[0].recipe)[0].dataset
    all_ids = list(train_split.ids)
    folds = fold_indices(train_split.labels, folds=3, seed=training.seed)

    fingerprints, oof_expected = set(), []
    for run, (_, held_out) in zip(plan.runs, folds):
        assert run_state(run.run_dir) == "finished"
        splits = read_splits(run.run_dir)
        by_split = {name: [image for image, split, _ in splits if split == name]
                    for name in ("train", "val", "test")}
        # The held-out fold is the run's test set; the other folds its train + carved validation.
        assert by_split["test"] == [all_ids[i] for i in held_out]
        assert sorted(by_split["train"] + by_split["val"]) == sorted(
            set(all_ids) - set(by_split["test"])
        )
        assert by_split["val"]  # validation_fraction 0.25 carved inside the training folds
        saved = load_recipe(run.run_dir / "recipe.yaml")
        assert saved.data.cross_validation.fold == run.fold
        assert saved.data.cross_validation.folds == 3
        fingerprints.add(json.loads((run.run_dir / "run.json").read_text())["data_fingerprint"])
        assert sorted(p.name for p in (run.run_dir / "checkpoints").iterdir()) == ["best.pt"]
        oof_expected += [[row[0], str(run.fold), "0", *row[1:]]
                         for row in read_csv(run.run_dir / "predictions.csv")[1:]]
    assert len(fingerprints) == 3  # the fingerprint covers the split

    oof = read_csv(output / "oof_predictions.csv")
    assert oof[0] == ["image", "fold", "repeat", "benign", "malignant"]
    assert oof[1:] == oof_expected
    assert sorted(row[0] for row in oof[1:]) == sorted(all_ids)  # every training image once

    metrics = [json.loads((r.run_dir / "metrics.json").read_text()) for r in plan.runs]
    assert summary["folds"] == 3 and summary["repeats"] == 1 and summary["group_by"] is None
    for name in ("ap", "auc", "accuracy"):
        values = [m["test"][name] for m in metrics]
        stat = summary["test"][name]
        assert {k: stat[k] for k in ("mean", "std", "n", "values")} == mean_std(values)
        finite = [v for v in values if v is not None]
        if len(finite) > 1 and np.std(finite) > 0:
            low, high = stats.ttest_1samp(finite, 0.0).confidence_interval(0.95)
            assert stat["ci"] == pytest.approx([max(0.0, low), min(1.0, high)], abs=1e-12)
    assert "t interval" in summary["interval"] and "optimistic" in summary["interval"]
    assert summary["validation"]["ap"]["n"] == 3

    # Run again: every fold is kept, nothing trains, the same files come out.
    events = []
    again = run_cv(tiny_recipe, folds=3, overrides=FAST, output=output,
                   on_event=lambda action, run, i, n: events.append(action))
    assert events == ["skip"] * 3
    assert json.loads(json.dumps(again)) == summary
    # A finished fold is not silently reused for another recipe.
    with pytest.raises(SweepCellError, match=r"^cv repeat 0 fold 0: .* finished with another "
                                             r"recipe .*synergic_weight"):
        run_cv(tiny_recipe, folds=3, overrides=[*FAST, "train.synergic_weight=1"], output=output)


def start(*args: str, cwd: Path) -> subprocess.Popen:
    output = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "synergic", *args], cwd=cwd, env=SUBPROCESS_ENV,
        stdout=output, stderr=subprocess.STDOUT, text=True,
    )
    process.output = output
    return process


def finish(process: subprocess.Popen) -> tuple[int, str]:
    process.wait(timeout=600)
    process.output.seek(0)
    return process.returncode, process.output.read()


def test_a_killed_cross_validation_resumes_to_the_uninterrupted_result(tiny_recipe, tmp_path):
    # 12 steps per fold, a checkpoint every 3: SIGKILL once fold 1 has passed its first checkpoint.
    arguments = [str(tiny_recipe), "--folds", "3", "--set", "train.iterations=12",
                 "--set", "train.checkpoint_every=3", "--set", "train.eval_every=4"]
    killed = tmp_path / "killed"
    process = start("cv", *arguments, "--output", str(killed), cwd=tmp_path)
    fold_1 = killed / "repeat-0" / "fold-1"
    deadline = time.monotonic() + 300  # a hang guard, not a timing assertion
    while not (fold_1 / "log.csv").is_file() or (fold_1 / "log.csv").read_text().count("\n") < 5:
        assert process.poll() is None, finish(process)[1][-2000:]
        assert time.monotonic() < deadline, "fold 1 never reached step 4"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert run_state(killed / "repeat-0" / "fold-0") == "finished"
    assert run_state(fold_1) == "interrupted"
    assert not (killed / "summary.json").exists()

    # The same command again, while the uninterrupted cross-validation runs beside it.
    reference = start("cv", *arguments, "--output", str(tmp_path / "whole"), cwd=tmp_path)
    code, output = finish(start("cv", *arguments, "--output", str(killed), cwd=tmp_path))
    assert code == 0, output[-3000:]
    assert "repeat 0 fold 0: finished earlier, kept" in output
    assert "repeat 0 fold 1: resuming" in output and "resuming from step" in output
    code, whole_output = finish(reference)
    assert code == 0, whole_output[-3000:]
    resumed = json.loads((killed / "summary.json").read_text())
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert resumed == whole
    assert (killed / "oof_predictions.csv").read_bytes() == (
        tmp_path / "whole" / "oof_predictions.csv").read_bytes()


# ---------------------------------------------------------------------------------- grouped data


class GroupedLesions:
    """A throwaway plugin: synthetic_lesions whose train split says which patient each image
    is of (four images per patient) and from which clinic (two)."""

    from synergic.plugins import hookimpl

    @hookimpl
    def register_datasets(register):
        from synergic.data.datasets.synthetic import synthetic_lesions

        def grouped(root=None, *, split, kinds=("patient",), **options):
            dataset = synthetic_lesions(root, split=split, **options)
            order = np.argsort(dataset.labels, kind="stable")  # one class per patient
            patient = [""] * len(dataset.labels)
            for position, index in enumerate(order):
                patient[index] = f"patient{position // 4}"
            every = {"patient": patient, "clinic": [f"clinic{i % 2}" for i in range(len(patient))]}
            dataset.groups = {kind: every[kind] for kind in kinds}
            return dataset

        register("grouped_lesions", grouped, description="synthetic lesions with patients")


@pytest.fixture
def grouped_recipe(tiny_recipe):
    from synergic.plugins import register_plugin, unregister_plugin

    register_plugin(GroupedLesions, "grouped-lesions-test")
    text = tiny_recipe.read_text().replace("dataset: synthetic_lesions", "dataset: grouped_lesions")
    tiny_recipe.write_text(text.replace("{num_train: 24", "{num_train: 48"))
    yield tiny_recipe
    unregister_plugin("grouped-lesions-test")


def test_grouped_cross_validation_keeps_a_patient_in_one_fold(grouped_recipe, tmp_path):
    from synergic.experiment import open_datasets

    plan = plan_cv(grouped_recipe, folds=3, output=tmp_path / "cv")
    assert plan.group_by == "patient"  # the data set's only kind of group, by default
    patients_per_fold = []
    for run in plan.runs:
        assert run.recipe.data.cross_validation.group_by == "patient"
        train, _, test = open_datasets(run.recipe)
        assert set(train.groups["patient"]).isdisjoint(test.groups["patient"])
        patients_per_fold.append(set(test.groups["patient"]))
    assert len(set.union(*patients_per_fold)) == 12  # every patient is held out once
    ungrouped = plan_cv(grouped_recipe, folds=3, group_by="none", output=tmp_path / "cv2")
    assert ungrouped.group_by is None
    with pytest.raises(SynergicError, match=r"--group-by pateint: .*did you mean 'patient'"):
        plan_cv(grouped_recipe, folds=3, group_by="pateint", output=tmp_path / "cv3")
    both = ["data.options.kinds=[patient, clinic]"]
    with pytest.raises(SynergicError, match="by patient, clinic: choose one with --group-by"):
        plan_cv(grouped_recipe, folds=3, overrides=both, output=tmp_path / "cv4")
    with pytest.raises(SynergicError, match="2 groups, fewer than the 3 folds"):
        plan_cv(grouped_recipe, folds=3, overrides=both, group_by="clinic", output=tmp_path / "c5")


def test_groups_that_break_the_convention_are_one_line_errors():
    from synergic.data.datasets.base import dataset_groups

    class Data:
        ids = ["a", "b", "c"]

    data = Data()
    assert dataset_groups(data, name="d") == {}
    data.groups = {"patient": [1, 1, 2]}
    assert dataset_groups(data, name="d") == {"patient": ["1", "1", "2"]}
    for groups, words in [(["p1", "p1", "p2"], "expected a mapping"),
                          ({"patient": ["p1"]}, r"groups\['patient'\] has 1 ids for 3 images"),
                          ({"patient": "p1p"}, "has a string for 3 images")]:
        data.groups = groups
        with pytest.raises(SynergicError, match=words):
            dataset_groups(data, name="d")


# ------------------------------------------------------------------------------------- launchers


def test_cv_command_errors_are_one_line(tiny_recipe, tmp_path, capsys):
    from synergic.cli import main

    for extra, words in [(["--folds", "20"], "fewer than the 20 folds"),
                         (["--folds", "3", "--group-by", "patient"],
                          "--group-by patient: synthetic_lesions has no groups (no lesion or "
                          "patient ids): drop --group-by"),
                         (["--folds", "3", "--launcher-option", "timeout_min=5"],
                          "--launcher-option needs --launcher slurm")]:
        with pytest.raises(SystemExit) as exit_:
            main(["cv", str(tiny_recipe), *extra, "--output", str(tmp_path / "cv")])
        assert exit_.value.code in (1, 2)
        err = capsys.readouterr().err.strip()
        assert words in err and "Traceback" not in err
    assert not (tmp_path / "cv").exists()


def test_folds_as_submitit_jobs_resume_and_match_the_local_runs(tiny_recipe, tmp_path,
                                                                monkeypatch):
    submitit = pytest.importorskip("submitit")
    for name, value in SUBPROCESS_ENV.items():
        monkeypatch.setenv(name, value)
    output = tmp_path / "jobs"
    plan = plan_cv(tiny_recipe, folds=2, overrides=FAST, output=output)
    # Fold 0 was stopped after its first checkpoint (as a pre-empted job would be).
    from synergic.experiment import run as run_experiment

    class Stop:
        def on_log(self, trainer, row):
            if row["step"] == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(SynergicError, match="stopped by SIGTERM"):
        run_experiment(plan.runs[0].recipe, plan.runs[0].run_dir, callbacks=[Stop()])
    assert run_state(plan.runs[0].run_dir) == "interrupted"

    events = []
    executor = submitit.LocalExecutor(folder=tmp_path / "submitit")
    summary = run_cv(tiny_recipe, folds=2, overrides=FAST, output=output, executor=executor,
                     on_event=lambda action, run, i, n: events.append((action, run.fold)))
    assert sorted(events) == [("done", 0), ("done", 1), ("submit", 0), ("submit", 1)]
    log = read_csv(plan.runs[0].run_dir / "log.csv")
    assert [row[0] for row in log[1:]] == ["1", "2", "3"]  # resumed at step 2, not restarted
    local = run_cv(tiny_recipe, folds=2, overrides=FAST, output=tmp_path / "local")
    assert summary["test"] == local["test"]

    # A failing job is one line naming the fold and the job's log.
    with pytest.raises(SweepCellError, match=r"^cv repeat 0 fold 0 failed: .*sampler.*bogus.* "
                                             r"\(job \S+, log: .*\)") as error:
        run_cv(tiny_recipe, folds=2, overrides=[*FAST, "train.sampler.options={bogus: 1}"],
               output=tmp_path / "failing", executor=executor)
    assert "\n" not in str(error.value)


def test_the_slurm_launcher_without_slurm_is_one_line(tiny_recipe, tmp_path, capsys):
    import shutil

    from synergic.cli import main

    pytest.importorskip("submitit")
    if shutil.which("srun") or shutil.which("sbatch"):
        pytest.skip("this machine has Slurm")
    for command in (["cv", tiny_recipe, "--folds", "2"],
                    ["sweep", tiny_recipe, "--grid", "train.synergic_weight=0,3"]):
        with pytest.raises(SystemExit) as caught:
            main([*map(str, command), "--launcher", "slurm", "--output", str(tmp_path / "out")])
        assert caught.value.code == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err
        (line,) = [line for line in err.splitlines() if line.startswith("error:")]
        assert "--launcher slurm: submitit cannot submit from this machine" in line
