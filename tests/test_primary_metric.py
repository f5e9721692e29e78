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
