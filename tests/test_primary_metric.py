"""A data set's primary metric (and task classes): checked when the data sets are opened, used to
select the best checkpoint, recorded in metrics.json and the checkpoint, and read back by sweeps,
cross-validation summaries, reports and `synergic compare`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from synergic.data.datasets.base import (
    PRIMARY_METRIC_ATTRIBUTE,
    TASK_CLASSES_ATTRIBUTE,
    dataset_primary_metric,
    dataset_task_classes,
)
from synergic.data.datasets.synthetic import synthetic_lesions
from synergic.errors import SynergicError


def _lesions(**attributes):
    dataset = synthetic_lesions(split="train", num_train=8, image_size=16)
    for name, value in attributes.items():
        setattr(dataset, name, value)
    return dataset


def test_a_data_set_without_the_attribute_ranks_by_average_precision():
    assert not hasattr(_lesions(), PRIMARY_METRIC_ATTRIBUTE)
    assert dataset_primary_metric(_lesions(), name="lesions") == "ap"
    assert dataset_task_classes(_lesions(), name="lesions") == ()


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"primary_metric": "auc"}, "auc"),
        ({"primary_metric": "specificity"}, "specificity"),
        ({"primary_metric": "task_auc", "task_classes": ("malignant",)}, "task_auc"),
        ({"primary_metric": "auc_malignant", "task_classes": ["malignant"]}, "auc_malignant"),
    ],
)
def test_a_data_set_names_its_primary_metric(attributes, expected):
    assert dataset_primary_metric(_lesions(**attributes), name="lesions") == expected


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        # balanced_accuracy is a key of more than two classes only; "task_auc" needs task classes
        ({"primary_metric": "balanced_accuracy"},
         "data set 'lesions': its primary_metric 'balanced_accuracy' is not a metric synergic "
         "reports for 2 classes"),
        ({"primary_metric": "acuracy"}, "(did you mean 'accuracy'?)"),
        ({"primary_metric": "task_auc"}, "use one of ap, ap_trapezoid, auc"),
        ({"task_classes": ("melanoma",)},
         "data set 'lesions': task_classes names 'melanoma', not one of its classes benign, "
         "malignant"),
        ({"task_classes": "malignant"}, "expected a tuple of class names"),
        ({"task_classes": ("malignant", "malignant")}, "names a class twice"),
    ],
)
def test_a_wrong_primary_metric_or_task_class_is_a_one_line_error(attributes, message):
    with pytest.raises(SynergicError) as caught:
        dataset_primary_metric(_lesions(**attributes), name="lesions")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert TASK_CLASSES_ATTRIBUTE == "task_classes"


def test_a_cross_validation_fold_keeps_the_data_sets_scoring():
    from synergic.cv import split_fold
    from synergic.recipe.schema import CrossValidationConfig

    dataset = _lesions(primary_metric="task_auc", task_classes=("malignant",))
    train, held_out = split_fold(dataset, CrossValidationConfig(folds=2, fold=0), name="lesions")
    for part in (train, held_out):
        assert dataset_primary_metric(part, name="lesions") == "task_auc"
        assert dataset_task_classes(part, name="lesions") == ("malignant",)


# -- a run on a data set that names its metric ---------------------------------------------------


def _lesions_ranked_by_task_auc(root=None, *, split, **options):
    dataset = synthetic_lesions(root, split=split, **options)
    dataset.primary_metric = "task_auc"
    dataset.task_classes = ("malignant",)
    return dataset


@pytest.fixture(scope="module")
def task_auc_runs(tmp_path_factory, one_torch_thread):
    """Two tiny runs (lambda 0 and 1) of a data set ranked by ``task_auc`` over one task class."""
    from tiny_recipe import write_recipe

    from synergic import registry
    from synergic.experiment import run
    from synergic.recipe import load_recipe

    folder = tmp_path_factory.mktemp("primary")
    registry.datasets.register("lesions_task_auc", _lesions_ranked_by_task_auc, origin="tests")
    try:
        recipe_path = write_recipe(folder / "tiny.yaml", **{"data.dataset": "lesions_task_auc",
                                                            "train.eval_every": 2})
        runs = {}
        for name, weight in (("ensemble", 0), ("sdl", 1)):
            recipe = load_recipe(recipe_path, [f"train.synergic_weight={weight}"])
            runs[name] = run(recipe, folder / name).run_dir
    finally:
        registry.datasets.unregister("lesions_task_auc")
    return runs


def test_the_run_selects_on_and_records_the_primary_metric(task_auc_runs):
    run_dir = task_auc_runs["sdl"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["primary_metric"] == "task_auc"
    assert metrics["task_classes"] == ["malignant"]
    # One task class: its one-vs-rest AUC is the binary AUC, and task_auc their mean.
    for section in (metrics["test"], metrics["validation"], *metrics["test_components"]):
        assert section["task_auc"] == section["auc_malignant"] == section["auc"]
    assert list(metrics["test_ci"]) == list(metrics["test"])
    assert metrics["test_ci"]["task_auc"] == metrics["test_ci"]["auc"]
    selected = metrics["selected"]
    assert selected["metric"] == "task_auc"
    assert selected["value"] == metrics["validation"]["task_auc"]
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    if selected["checkpoint"] == "best":
        assert math.isclose(selected["value"], max(
            entry["task_auc"] for entry in last["validation_history"]
            if entry["step"] % 2 == 0 and entry["task_auc"] is not None
        ))
    assert last["metadata"]["primary_metric"] == "task_auc"
    assert last["metadata"]["task_classes"] == ["malignant"]


def test_sweep_report_and_compare_default_to_the_runs_primary_metric(task_auc_runs, tmp_path):
    from synergic.compare import compare_runs
    from synergic.report import write_report
    from synergic.sweep.summary import primary_metric_of

    records = [json.loads((d / "metrics.json").read_text()) for d in task_auc_runs.values()]
    assert primary_metric_of(records) == "task_auc"
    assert primary_metric_of([{"test": {}}]) == "ap"  # a run written before data sets named one
    with pytest.raises(SynergicError, match=r"different primary metrics \(task_auc, ap\)"):
        primary_metric_of([*records, {"test": {}}])

    compared = compare_runs(task_auc_runs["ensemble"], task_auc_runs["sdl"], n_bootstrap=10)
    assert compared["metric"] == "task_auc"
    assert (compared["a"], compared["b"]) == tuple(r["test"]["task_auc"] for r in records)

    report = write_report(list(task_auc_runs.values()), tmp_path / "report.md", n_bootstrap=10)
    text = report.path.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| run |"))
    assert "| validation task_auc | task_auc | AP |" in header


def test_report_pairs_sdl_and_ensemble_in_compare_s_metric_and_names_its_own_option(
    task_auc_runs, tmp_path
):
    import shutil

    from synergic.compare import compare_runs
    from synergic.report import write_report

    report = write_report(list(task_auc_runs.values()), tmp_path / "report.md", n_bootstrap=10)
    assert [c["metric"] for c in report.comparisons] == ["task_auc"]
    compared = compare_runs(task_auc_runs["ensemble"], task_auc_runs["sdl"], n_bootstrap=10)
    assert report.comparisons[0]["difference"] == compared["difference"]
    text = report.path.read_text()
    assert "| ensemble (A) | SDL (B) | seeds | images | task_auc A | task_auc B |" in text
    assert "Compared in task_auc: the runs' primary metric" in text

    # Runs of two data sets: the error names report's --metric, not sweep's --select-metric.
    older = shutil.copytree(task_auc_runs["ensemble"], tmp_path / "older")
    metrics = json.loads((older / "metrics.json").read_text())
    del metrics["primary_metric"]  # written before data sets named their metric: AP
    (older / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(SynergicError) as error:
        write_report([task_auc_runs["sdl"], older], tmp_path / "mixed.md")
    assert str(error.value).endswith("runs of different data sets; choose the metric with --metric")


def test_eval_of_the_validation_split_leaves_the_test_split_closed(task_auc_runs):
    from synergic import registry
    from synergic.serving import evaluate_run

    def no_test_split(root=None, *, split, **options):
        if split == "test":  # ISIC 2019's test split warns about its UNK images, for one
            raise SynergicError("the test split was opened")
        return _lesions_ranked_by_task_auc(root, split=split, **options)

    registry.datasets.register("lesions_task_auc", no_test_split, origin="tests")
    try:
        metrics = evaluate_run(task_auc_runs["sdl"], split="val")
        assert "task_auc" in metrics["aggregate"]
        with pytest.raises(SynergicError, match="the test split was opened"):
            evaluate_run(task_auc_runs["sdl"], split="test")
    finally:
        registry.datasets.unregister("lesions_task_auc")


def test_predict_writes_a_challenge_submission_or_refuses_in_one_line(task_auc_runs, tmp_path):
    import numpy as np
    from click.testing import CliRunner
    from PIL import Image

    from synergic.cli import cli

    images = tmp_path / "images"
    images.mkdir()
    for k in range(3):
        pixels = np.full((32, 32, 3), 60 * k, dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"ISIC_{k:07d}.png")
        # As in the challenges' image folders: not an image of its own (one row per image).
        Image.fromarray(pixels).save(images / f"ISIC_{k:07d}_superpixels.png")
    run_dir = task_auc_runs["sdl"]
    plain = CliRunner().invoke(cli, ["predict", str(run_dir), str(images), "--json"])
    assert plain.exit_code == 0, plain.output
    malignant = {Path(p["image"]).stem: p["probabilities"]["malignant"]
                 for p in json.loads(plain.output)["predictions"]}
    output = tmp_path / "submission.csv"
    result = CliRunner().invoke(cli, ["predict", str(run_dir), str(images), "--format",
                                      "isic2020", "--output", str(output)])
    assert result.exit_code == 0, result.output
    lines = output.read_text().splitlines()
    assert lines[0] == "image_name,target" and len(lines) == 4
    for line in lines[1:]:
        image, target = line.split(",")
        assert float(target) == malignant[image]

    refused = tmp_path / "refused.csv"
    result = CliRunner().invoke(cli, ["predict", str(run_dir), str(images), "--format",
                                      "isic2018", "--output", str(refused)])
    assert result.exit_code != 0 and not refused.exists()
    message = str(result.exception) if result.exception else result.output
    assert "--format isic2018: the run's classes (benign, malignant)" in message


def test_the_cli_lists_every_submission_format():
    from synergic.cli.runs import predict
    from synergic.serving import SUBMISSION_FORMATS

    choices = next(p for p in predict.params if p.name == "csv_format").type.choices
    assert tuple(choices) == ("csv", *SUBMISSION_FORMATS)


def test_a_sweep_summary_words_its_selection_with_the_primary_metric(task_auc_runs):
    from synergic.recipe import load_recipe
    from synergic.stats import format_stat
    from synergic.sweep import summarize_sweep, summary_markdown
    from synergic.sweep.plan import SweepRun

    runs = [SweepRun(f"train.synergic_weight={weight}", {"train.synergic_weight": str(weight)}, 0,
                     run_dir, load_recipe(run_dir / "recipe.yaml"))
            for weight, run_dir in zip((0, 1), task_auc_runs.values())]
    summary = summarize_sweep(runs, task_auc_runs["sdl"].parent)
    assert summary["select_metric"] == "task_auc"
    assert summary["selected"] is not None, summary["selection_note"]
    text = summary_markdown(summary)
    selected = next(c for c in summary["cells"] if c["cell"] == summary["selected"])
    assert f"its test task_auc is {format_stat(selected['test']['task_auc'])}." in text
    assert "test AP is" not in text
    header = next(line for line in text.splitlines() if line.startswith("| cell |"))
    assert header.startswith("| cell | seeds | validation task_auc | test task_auc | test AP |")


# -- the recipe keys data.primary_metric and data.task_classes -----------------------------------


def _scoring(dataset, **overrides):
    from synergic.experiment import dataset_scoring

    return dataset_scoring(dataset, "lesions", **overrides)


def test_the_recipe_overrides_the_data_sets_primary_metric_and_task_classes():
    assert _scoring(_lesions()) == ("ap", ())
    assert _scoring(_lesions(), primary_metric="auc") == ("auc", ())
    ranked = _lesions(primary_metric="task_auc", task_classes=("malignant",))
    assert _scoring(ranked) == ("task_auc", ("malignant",))
    assert _scoring(ranked, primary_metric="specificity") == ("specificity", ("malignant",))
    # task classes of the recipe, with the data set's own metric or the recipe's
    assert _scoring(_lesions(), task_classes=["benign"]) == ("ap", ("benign",))
    assert _scoring(ranked, task_classes=["benign", "malignant"]) == (
        "task_auc", ("benign", "malignant"))
    assert _scoring(_lesions(), primary_metric="auc_benign", task_classes=["benign"]) == (
        "auc_benign", ("benign",))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"primary_metric": "balanced_accuracy"},
     "data.primary_metric 'balanced_accuracy' is not a metric synergic reports for data set "
     "'lesions' (2 classes) (did you mean 'accuracy'?); use one of ap, ap_trapezoid, auc, "
     "accuracy, sensitivity, specificity"),
    ({"primary_metric": "auc_malignent", "task_classes": ["malignant"]},
     "(2 classes, task classes malignant) (did you mean 'auc_malignant'?); use one of"),
    ({"primary_metric": "task_auc"}, "data.primary_metric 'task_auc' is not a metric"),
    ({"task_classes": ["malignent"]},
     "data.task_classes names 'malignent', not a class of data set 'lesions' (benign, malignant) "
     "(did you mean 'malignant'?)"),
])
def test_a_wrong_override_is_one_line_naming_the_recipe_key(overrides, message):
    with pytest.raises(SynergicError) as caught:
        _scoring(_lesions(), **overrides)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_keys_are_checked_on_load_and_left_out_of_written_recipes_while_unset(tmp_path):
    from tiny_recipe import write_recipe

    from synergic.recipe import load_recipe, recipe_to_yaml
    from synergic.rundir import identity_hash

    plain = load_recipe(write_recipe(tmp_path / "plain.yaml"))
    assert "primary_metric" not in recipe_to_yaml(plain)
    assert "task_classes" not in recipe_to_yaml(plain)
    ranked = load_recipe(write_recipe(tmp_path / "auc.yaml", **{"data.primary_metric": "auc"}))
    assert "primary_metric: auc" in recipe_to_yaml(ranked)
    assert identity_hash(ranked) != identity_hash(plain)  # it changes what the run selects
    tasks = load_recipe(write_recipe(tmp_path / "t.yaml", **{"data.task_classes": ["benign"]}))
    assert identity_hash(tasks) != identity_hash(plain)
    # identities of recipes without the keys stay as they were: the key is absent, not null
    assert plain.model_dump(mode="json")["data"].keys().isdisjoint({"primary_metric",
                                                                    "task_classes"})
    for key, value, words in [
        ("data.primary_metric", "acuracy", "data.primary_metric: 'acuracy' is not allowed: not a "
         "metric synergic computes (did you mean 'accuracy'?)"),
        ("data.task_classes", [], "data.task_classes: [] is not allowed: must name at least one"),
        ("data.task_classes", ["a", "a"], "names a class twice"),
    ]:
        with pytest.raises(SynergicError) as caught:
            load_recipe(write_recipe(tmp_path / "bad.yaml", **{key: value}))
        assert words in str(caught.value) and "\n" not in str(caught.value)


# -- resuming keeps the checkpoint's metric ------------------------------------------------------


class _StopAtStepFive:
    def on_log(self, trainer, row):
        if row["step"] == 5:
            raise RuntimeError("stopped by the test")


@pytest.fixture(scope="module")
def stopped_task_auc_run(tmp_path_factory, one_torch_thread):
    """A tiny run of a data set ranked by ``task_auc``, stopped after its checkpoint at step 4,
    with ``data.primary_metric`` unset (the data set's own metric)."""
    from tiny_recipe import write_recipe

    from synergic import registry
    from synergic.experiment import run
    from synergic.recipe import load_recipe

    folder = tmp_path_factory.mktemp("stopped")
    registry.datasets.register("lesions_task_auc", _lesions_ranked_by_task_auc, origin="tests")
    try:
        recipe = load_recipe(write_recipe(folder / "tiny.yaml",
                                          **{"data.dataset": "lesions_task_auc",
                                             "train.n_bootstrap": 0}))
        with pytest.raises(RuntimeError, match="stopped by the test"):
            run(recipe, folder / "run", callbacks=[_StopAtStepFive()])
    finally:
        registry.datasets.unregister("lesions_task_auc")
    return recipe, folder / "run"


@pytest.mark.parametrize(("recorded", "expected"), [
    (None, "ap"),      # a checkpoint from before data sets named their metric selected on AP
    ("auc", "auc"),    # the metric the run started with, though the data set now names another
])
def test_a_resumed_run_keeps_the_primary_metric_of_its_checkpoint(
    stopped_task_auc_run, tmp_path, recorded, expected
):
    import shutil

    from synergic import registry
    from synergic.experiment import run

    recipe, stopped = stopped_task_auc_run
    run_dir = shutil.copytree(stopped, tmp_path / "run")
    last = run_dir / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=False)
    assert state["step"] == 4 and state["metadata"]["primary_metric"] == "task_auc"
    if recorded is None:
        del state["metadata"]["primary_metric"]
    else:
        state["metadata"]["primary_metric"] = recorded
    torch.save(state, last)

    registry.datasets.register("lesions_task_auc", _lesions_ranked_by_task_auc, origin="tests")
    try:
        result = run(recipe, run_dir, resume=True)
    finally:
        registry.datasets.unregister("lesions_task_auc")
    metrics = result.metrics
    assert metrics["iterations"] == 6
    assert metrics["primary_metric"] == expected
    assert metrics["selected"]["metric"] == expected
    assert metrics["selected"]["value"] == metrics["validation"][expected]
    resumed = torch.load(last, weights_only=False)
    assert resumed["step"] == 6 and resumed["metadata"]["primary_metric"] == expected


def test_a_run_ranks_by_the_recipes_primary_metric(tmp_path, one_torch_thread):
    from click.testing import CliRunner
    from tiny_recipe import write_recipe

    from synergic.cli import cli

    recipe = write_recipe(tmp_path / "tiny.yaml", **{
        "data.primary_metric": "auc_malignant", "data.task_classes": ["malignant"],
        "train.n_bootstrap": 0, "train.iterations": 3})
    result = CliRunner().invoke(cli, ["run", str(recipe), "--output", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # The closing line compares the metric the run ranks by, not AP.
    assert "the aggregate's auc_malignant is " in result.output
    assert "the aggregate's AP" not in result.output
    assert metrics["primary_metric"] == "auc_malignant"
    assert metrics["task_classes"] == ["malignant"]
    assert metrics["selected"]["metric"] == "auc_malignant"
    assert metrics["test"]["auc_malignant"] == metrics["test"]["auc"]
    assert "primary_metric: auc_malignant" in (tmp_path / "run" / "recipe.yaml").read_text()
