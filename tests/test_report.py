"""The report, on run directories written here (no training): its numbers must be the runs'."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from synergic.cli import cli
from synergic.errors import SynergicError
from synergic.experiment import open_datasets
from synergic.metrics import compute_metrics
from synergic.paper import TABLE_1, TABLE_2
from synergic.recipe import load_recipe, save_recipe
from synergic.report import find_runs, group_runs, training_seconds, write_report
from synergic.sweep import format_stat, mean_std


def make_run(run_dir, recipe_file, overrides, *, seed, seconds_per_step, labels_file=False,
             flip=False):
    """A finished run directory as experiment.run writes it, with predictions drawn at random."""
    recipe = load_recipe(recipe_file, [*overrides, f"seed={seed}"])
    save_recipe(recipe, run_dir / "recipe.yaml")
    _, _, test = open_datasets(recipe)
    labels = np.array(list(test.labels))
    rng = np.random.default_rng(seed * 100 + len(overrides))
    positive = np.clip(0.35 * labels + rng.uniform(0.0, 0.65, size=labels.size), 0.0, 1.0)
    probabilities = np.stack([1.0 - positive, positive], axis=1)
    validation = compute_metrics(probabilities[::-1].copy(), labels)
    metrics = {"test": compute_metrics(probabilities, labels), "test_components": [],
               "classes": ["benign", "malignant"], "iterations": 2,
               "validation": {"step": 2, **validation}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    rows = ["image,benign,malignant"]
    rows += [f"{i},{p[0]!r},{p[1]!r}" for i, p in zip(test.ids, probabilities.tolist())]
    (run_dir / "predictions.csv").write_text("\n".join(rows) + "\n")
    # log_every is 1 in the tiny recipe: two steps of `seconds_per_step` each.
    (run_dir / "log.csv").write_text(
        "step,loss,lr,seconds_per_step\n"
        f"1,0.7,0.01,{seconds_per_step}\n2,0.6,0.01,{seconds_per_step}\n"
    )
    if labels_file:
        shown = 1 - labels if flip else labels
        names = ["benign", "malignant"]
        text = "image,label\n" + "".join(f"{i},{names[y]}\n" for i, y in zip(test.ids, shown))
        (run_dir / "test_labels.csv").write_text(text)
    return metrics


@pytest.fixture
def runs(tiny_recipe, tmp_path):
    """SDL^n, n = 1, 2, 3 at lambda = 3 (n = 1 has lambda 0, as the ResNet-50 recipe), two seeds
    for n = 1, 2, and an ensemble (n = 2, lambda = 0)."""
    plan = [
        ("single", ["model.components=1", "train.synergic_weight=0"], [0, 1], 1.0),
        ("sdl2", ["model.components=2", "train.synergic_weight=3"], [0, 1], 2.5),
        ("sdl3", ["model.components=3", "train.synergic_weight=3"], [0], 4.0),
        ("ensemble", ["model.components=2", "train.synergic_weight=0"], [0], 2.5),
    ]
    written = {}
    for name, overrides, seeds, seconds in plan:
        for seed in seeds:
            run_dir = tmp_path / "runs" / name / f"seed{seed}"
            run_dir.mkdir(parents=True)
            written[(name, seed)] = make_run(run_dir, tiny_recipe, overrides, seed=seed,
                                             seconds_per_step=seconds, labels_file=name == "sdl3")
    return tmp_path / "runs", written


def table_row(text, label):
    rows = [line for line in text.splitlines() if line.startswith(f"| {label} |")]
    assert len(rows) == 1, (label, rows)
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_report_table_equals_the_runs_metrics(runs, tmp_path):
    folder, written = runs
    output = tmp_path / "out" / "report.md"
    paths = [str(folder / name) for name in ("single", "sdl2", "sdl3", "ensemble")]
    result = CliRunner().invoke(cli, ["report", *paths, "-o", str(output)])
    assert result.exit_code == 0, result.output
    text = output.read_text()
    header = table_row(text, "run")
    assert header == ["run", "DA", "runs", "validation ap", "AP", "AP (trapezoid)", "accuracy",
                      "AUC", "training time"]
    expected = {
        "tiny (model.components=1, train.synergic_weight=0)": ("single", [0, 1], "2.0 s"),
        "tiny (model.components=2, train.synergic_weight=3)": ("sdl2", [0, 1], "5.0 s"),
        "tiny (model.components=3, train.synergic_weight=3)": ("sdl3", [0], "8.0 s"),
        "tiny (model.components=2, train.synergic_weight=0)": ("ensemble", [0], "5.0 s"),
    }
    for label, (name, seeds, seconds) in expected.items():
        row = dict(zip(header, table_row(text, label)))
        metrics = [written[(name, seed)] for seed in seeds]
        assert row["runs"] == str(len(seeds)) and row["DA"] == "Y"
        assert row["training time"] == seconds
        for column, key in [("AP", "ap"), ("AP (trapezoid)", "ap_trapezoid"),
                            ("accuracy", "accuracy"), ("AUC", "auc")]:
            assert row[column] == format_stat(mean_std([m["test"][key] for m in metrics]))
        validation = [m["validation"]["ap"] for m in metrics]
        assert row["validation ap"] == format_stat(mean_std(validation))
        assert (" ± " in row["AP"]) == (len(seeds) > 1)

    # The paper's numbers, labelled as such, its AP in the trapezoid column.
    for reported in TABLE_1:
        augmented = "Y" if reported.augmentation else "N"
        assert f"| {reported.method}, paper (reported) | {augmented} |" in text
        assert f"{reported.ap:.4f}*" in text
    assert all(f"| {r.method}, paper (reported) | {r.ap:.3f} |" in text for r in TABLE_2)
    assert "trapezoid" in text and "scikit-learn 0.19" in text

    # Fig. 5: time relative to the single network (n = 1: lambda does not apply to it), for the
    # series that varies n; the ensemble alone next to it is no SDL^n curve.
    rows = [line for line in text.splitlines() if line.startswith("| synergic_weight=")]
    relative = {(cells[0], cells[1]): cells[-1] for cells in
                ([c.strip() for c in line.strip("|").split("|")] for line in rows)}
    assert relative == {("synergic_weight=3", "1"): "1.00", ("synergic_weight=3", "2"): "2.50",
                        ("synergic_weight=3", "3"): "4.00"}
    for name in ("roc", "lambda", "components"):
        path = output.parent / f"report_{name}.png"
        assert f"]({path.name})" in text
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300
    assert "## Notes" not in text
    assert not list(output.parent.glob(".*.tmp"))


def test_rows_group_seeds_and_label_by_the_keys_that_differ(runs):
    folder, written = runs
    found, selected, notes = find_runs([folder])  # a folder of runs, two levels down
    assert len(found) == 6 and not selected and not notes
    groups = group_runs(found)
    # in the folders' sorted order: ensemble, sdl2, sdl3, single
    assert [len(g.runs) for g in groups] == [1, 2, 1, 2]
    assert [g.short_label for g in groups] == [
        "components=2, synergic_weight=0", "components=2, synergic_weight=3",
        "components=3, synergic_weight=3", "components=1, synergic_weight=0",
    ]
    sdl2 = groups[1]
    assert [r.seed for r in sdl2.runs] == [0, 1]
    assert sdl2.stat("auc") == mean_std([written[("sdl2", s)]["test"]["auc"] for s in (0, 1)])
    assert training_seconds(sdl2.runs[0].run_dir, log_every=10) == pytest.approx(50.0)


def test_labels_that_do_not_reproduce_the_auc_are_left_out(tiny_recipe, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    make_run(run_dir, tiny_recipe, [], seed=0, seconds_per_step=1.0, labels_file=True, flip=True)
    report = write_report([run_dir], tmp_path / "r.md", paper=False)
    assert "roc" not in report.figures and not (tmp_path / "r_roc.png").exists()
    assert len(report.notes) == 1 and "recorded" in report.notes[0]
    text = (tmp_path / "r.md").read_text()
    assert "paper (reported)" not in text and "## Notes" in text
    assert "lambda" not in report.figures and "components" not in report.figures


def test_report_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SynergicError, match="holds no finished run"):
        write_report([tmp_path / "empty"], tmp_path / "r.md")
    with pytest.raises(SynergicError, match="ending in .md"):
        write_report([tmp_path / "empty"], tmp_path / "r.html")
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "empty"), "--metric", "apx"])
    assert result.exit_code != 0 and "did you mean 'ap'" in str(result.exception)


@pytest.mark.parametrize("shown, drawn", [
    (lambda label: str(label), True),                          # class indices
    (lambda label: ["benign", "malignant"][label] + " ", True),  # a name with a stray space
    (lambda label: "7", False),                                # no such class index
    (lambda label: "1.5", False),
])
def test_test_labels_may_be_names_or_indices_and_nothing_else(tiny_recipe, tmp_path, shown, drawn):
    import csv

    from synergic.report import find_runs, read_test_labels

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    make_run(run_dir, tiny_recipe, [], seed=0, seconds_per_step=1.0, labels_file=True)
    with (run_dir / "test_labels.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    names = ["benign", "malignant"]
    with (run_dir / "test_labels.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([rows[0]] + [[i, shown(names.index(y))] for i, y in rows[1:]])
    report = write_report([run_dir], tmp_path / "r.md", paper=False)
    assert ("roc" in report.figures) is drawn, report.notes
    if drawn:
        run = find_runs([run_dir])[0][0]
        _, labels = read_test_labels(run)
        assert labels.tolist() == [names.index(y) for _, y in rows[1:]]
    else:
        assert len(report.notes) == 1 and "neither a class (benign, malignant)" in report.notes[0]
