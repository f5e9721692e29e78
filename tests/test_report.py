"""The report, on run directories written here (no training): its numbers must be the runs'."""

from __future__ import annotations

import json
from pathlib import Path

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
    """The cells of the Table 1 row ``label`` (the table before the report's first section)."""
    table = text.split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith(f"| {label} |")]
    assert len(rows) == 1, (label, rows)
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_report_table_equals_the_runs_metrics(runs, tmp_path):
    folder, written = runs
    output = tmp_path / "out" / "report.md"
    paths = [str(folder / name) for name in ("single", "sdl2", "sdl3", "ensemble")]
    # --paper: synthetic runs get no paper rows unless asked (test_paper_rows_...)
    result = CliRunner().invoke(cli, ["report", *paths, "-o", str(output), "--paper"])
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


# -- where the report goes, and when the paper's rows belong in it -----------------------------


def test_the_report_goes_beside_what_it_reports_on(runs, tmp_path, monkeypatch):
    from synergic.report import default_report_path

    folder, _ = runs
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    def report(*args):
        result = CliRunner().invoke(cli, ["report", *map(str, args)])
        assert result.exit_code == 0, result.output
        return result.output

    # a folder of runs (a sweep): its report.md and figures inside it
    output = report(folder)
    assert f"report: {folder / 'report.md'} (4 rows)" in output
    assert (folder / "report.md").is_file() and (folder / "report_roc.png").is_file()
    # one run directory: inside the run
    run_dir = folder / "sdl3" / "seed0"
    report(run_dir)
    assert (run_dir / "report.md").is_file() and (run_dir / "report_roc.png").is_file()
    # several: the deepest folder holding them all
    report(folder / "single", folder / "sdl2" / "seed1")
    assert "3 runs in 2 rows" in (folder / "report.md").read_text()
    assert list(elsewhere.iterdir()) == []  # nothing in the working directory
    # --output still wins
    report(folder / "single", "--output", elsewhere / "mine.md")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["mine.md", "mine_calibration.png",
                                                           "mine_roc.png"]

    # relative paths give a relative report path
    monkeypatch.chdir(folder)
    assert default_report_path(["sdl2", "sdl3/seed0"]) == Path("report.md")
    assert default_report_path(["sdl2/seed0"]) == Path("sdl2/seed0/report.md")
    assert default_report_path([folder / "sdl2"]) == Path("sdl2/report.md")
    with pytest.raises(SynergicError, match="share no folder but /: give --output"):
        default_report_path(["/srv/runs/a", "/home/me/runs/b"])


CLASSES = ["benign", "malignant"]


def make_isic_run(run_dir, tiny_recipe, record, *, seed=0):
    """A finished two-class run whose recipe reads isic2016, with ``record`` as its data record;
    its test labels are in test_labels.csv, so no data set is opened."""
    recipe = load_recipe(tiny_recipe, ["data.dataset=isic2016", "data.options={}", f"seed={seed}"])
    run_dir.mkdir(parents=True)
    save_recipe(recipe, run_dir / "recipe.yaml")
    test = record["test"]
    labels = np.array([0] * test["benign"] + [1] * test["malignant"])
    rng = np.random.default_rng(seed)
    positive = np.clip(0.4 * labels + rng.uniform(0.0, 0.6, size=labels.size), 0.0, 1.0)
    probabilities = np.stack([1.0 - positive, positive], axis=1)
    ids = [f"ISIC_{k:07d}" for k in range(labels.size)]
    metrics = {"test": compute_metrics(probabilities, labels), "test_components": [],
               "classes": CLASSES, "iterations": 2, "data": record}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "predictions.csv").write_text("image,benign,malignant\n" + "".join(
        f"{i},{p[0]!r},{p[1]!r}\n" for i, p in zip(ids, probabilities.tolist())))
    (run_dir / "test_labels.csv").write_text("image,label\n" + "".join(
        f"{i},{CLASSES[y]}\n" for i, y in zip(ids, labels)))


OFFICIAL = {"train": {"benign": 582, "malignant": 138}, "validation": {"benign": 145,
            "malignant": 35}, "test": {"benign": 304, "malignant": 75}, "fingerprint": "ab" * 32}
SAMPLE = {"train": {"benign": 16, "malignant": 4}, "test": {"benign": 8, "malignant": 2},
          "fingerprint": "cd" * 32}


def test_paper_rows_only_for_the_official_isic2016_split(runs, tiny_recipe, tmp_path):
    from synergic.report import paper_applies

    def paper_rows(report):
        text = report.path.read_text()
        return sum(line.startswith("| ") and "paper (reported)" in line
                   for line in text.splitlines())

    # synthetic runs: no paper rows, and no note about them either
    folder, _ = runs
    synthetic = write_report([folder])
    assert not synthetic.paper and paper_rows(synthetic) == 0 and not synthetic.notes
    assert "scikit-learn's step-wise average precision" in synthetic.path.read_text()

    official = tmp_path / "isic" / "official"
    make_isic_run(official, tiny_recipe, OFFICIAL)
    report = write_report([official])
    assert report.path == official / "report.md"
    assert report.paper and paper_rows(report) == len(TABLE_1) + len(TABLE_2)
    assert not report.notes and "roc" in report.figures

    # the sample of ISIC 2016 is not the paper's test set: left out, with a note saying why
    sample = tmp_path / "isic" / "sample"
    make_isic_run(sample, tiny_recipe, SAMPLE)
    report = write_report([official, sample])
    assert report.path == tmp_path / "isic" / "report.md"
    assert not report.paper and paper_rows(report) == 0
    assert report.notes == [
        f"the paper's rows are left out: {sample} reads 20 training and validation and 10 test "
        "images of ISIC 2016, not the official 900 and 379 (--paper adds them)"]
    # --paper and --no-paper force it either way
    assert paper_rows(write_report([official, sample], paper=True)) == len(TABLE_1) + len(TABLE_2)
    assert paper_rows(write_report([official], paper=False)) == 0

    found = find_runs([official, sample, folder / "sdl3"])[0]
    applies, reasons = paper_applies(found)
    assert not applies and len(reasons) == 2
    synthetic_run = folder / "sdl3" / "seed0"
    assert reasons[1] == f"{synthetic_run} is on the data set synthetic_lesions, not isic2016"
    # a run of an older version, without a data record, is taken at its recipe's word
    older = find_runs([official])[0]
    del older[0].metrics["data"]
    assert paper_applies(older) == (True, [])


def test_multi_class_runs_get_one_vs_rest_roc_panels(tiny_recipe, tmp_path):
    classes = ["nevus", "melanoma", "keratosis"]

    def make_run(run_dir, seed, labels, *, tamper=False):
        recipe = load_recipe(tiny_recipe, ["data.dataset=folder", "data.options={}",
                                           f"data.root={tmp_path / 'images'}",
                                           f"train.synergic_weight={seed}"])  # one row each
        run_dir.mkdir(parents=True)
        save_recipe(recipe, run_dir / "recipe.yaml")
        rng = np.random.default_rng(seed)
        logits = rng.normal(size=(labels.size, 3)) + 1.5 * np.eye(3)[labels]
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        metrics = {"test": compute_metrics(probabilities, labels), "test_components": [],
                   "classes": classes, "iterations": 2}
        (run_dir / "metrics.json").write_text(json.dumps(metrics, allow_nan=True)
                                              .replace("NaN", "null"))
        ids = [f"{k}.png" for k in range(labels.size)]
        (run_dir / "predictions.csv").write_text("image," + ",".join(classes) + "\n" + "".join(
            f"{i},{','.join(map(repr, p))}\n" for i, p in zip(ids, probabilities.tolist())))
        shown = np.roll(labels, 1) if tamper else labels
        (run_dir / "test_labels.csv").write_text("image,label\n" + "".join(
            f"{i},{classes[y]}\n" for i, y in zip(ids, shown)))

    every_class = np.array([0, 1, 2, 0, 2, 1, 0, 2, 1, 0, 1, 2])
    make_run(tmp_path / "runs" / "a", 0, every_class)
    make_run(tmp_path / "runs" / "b", 1, every_class % 2)  # no keratosis: its AUC is undefined
    make_run(tmp_path / "runs" / "c", 2, every_class, tamper=True)
    report = write_report([tmp_path / "runs" / name for name in "abc"], paper=False)
    assert report.path == tmp_path / "runs" / "report.md"
    # a (lambda 0) and b, c (lambda > 0) are an ensemble and SDL rows, but on other test labels
    paired = [note for note in report.notes if note.startswith("SDL vs ensemble: ")]
    assert len(paired) == 2 and all("their test sets differ" in note for note in paired)
    roc = [note for note in report.notes if note.startswith("ROC: ")]
    assert len(roc) == 1 and "AUC" in roc[0] and "recorded" in roc[0]
    assert str(tmp_path / "runs" / "c") in roc[0]
    with Image.open(report.figures["roc"]) as image:
        width, height = image.size
    assert width > 2 * height  # three one-vs-rest panels side by side


# -- the evidence: intervals, SDL vs ensemble, calibration, cross-validation -------------------


def make_scored_run(run_dir, tiny_recipe, overrides, labels, positive, *, seed=0,
                    n_bootstrap=0, validation=None):
    """A finished two-class run with the given test scores (ids ``img<k>``), its metrics.json
    written as experiment.run writes it: test metrics, ``test_ci`` (with ``n_bootstrap``), and
    the threshold and calibration entries (thresholds chosen on ``validation``: labels, scores)."""
    from synergic.metrics import threshold_and_calibration
    from synergic.rundir import json_safe
    from synergic.stats import metric_intervals

    recipe = load_recipe(tiny_recipe, [*overrides, f"seed={seed}"])
    run_dir.mkdir(parents=True)
    save_recipe(recipe, run_dir / "recipe.yaml")
    probabilities = np.stack([1.0 - positive, positive], axis=1)
    metrics = {"test": compute_metrics(probabilities, labels), "test_components": [],
               "classes": CLASSES, "iterations": 2}
    if n_bootstrap:
        metrics.update(metric_intervals(probabilities, labels, n_bootstrap=n_bootstrap,
                                        seed=seed))
    kwargs = {}
    if validation is not None:
        validation_labels, validation_scores = validation
        kwargs = {"validation_labels": validation_labels, "validation_probabilities":
                  np.stack([1.0 - validation_scores, validation_scores], axis=1)}
    metrics.update(threshold_and_calibration(probabilities, labels, **kwargs))
    (run_dir / "metrics.json").write_text(json.dumps(json_safe(metrics)))
    ids = [f"img{k}" for k in range(labels.size)]
    (run_dir / "predictions.csv").write_text("image,benign,malignant\n" + "".join(
        f"{i},{p[0]!r},{p[1]!r}\n" for i, p in zip(ids, probabilities.tolist())))
    (run_dir / "test_labels.csv").write_text("image,label\n" + "".join(
        f"{i},{CLASSES[y]}\n" for i, y in zip(ids, labels)))
    return json.loads((run_dir / "metrics.json").read_text())


LABELS = np.array([0] * 40 + [1] * 20)


def scores(seed, separation):
    rng = np.random.default_rng(seed)
    return np.clip(separation * LABELS + rng.uniform(0.0, 1.0 - separation, LABELS.size), 0, 1)


def test_a_row_of_one_run_shows_its_bootstrap_interval(tiny_recipe, tmp_path):
    one = make_scored_run(tmp_path / "one", tiny_recipe, [], LABELS, scores(0, 0.3),
                          n_bootstrap=50)
    for seed in (0, 1):  # a row of two seeds: mean ± std, no interval
        make_scored_run(tmp_path / "two" / f"seed{seed}", tiny_recipe,
                        ["train.synergic_weight=1"], LABELS, scores(seed + 5, 0.3),
                        n_bootstrap=50, seed=seed)
    report = write_report([tmp_path / "one", tmp_path / "two"], tmp_path / "r.md", paper=False)
    text = report.path.read_text()
    assert "A row of one run shows its 95 % bootstrap interval" in text
    header = table_row(text, "run")
    row = dict(zip(header, table_row(text, "tiny (train.synergic_weight=3)")))
    for column, key in [("AP", "ap"), ("AP (trapezoid)", "ap_trapezoid"),
                        ("accuracy", "accuracy"), ("AUC", "auc")]:
        low, high = one["test_ci"][key]
        assert low <= one["test"][key] <= high and low < high
        assert row[column] == f"{one['test'][key]:.4f} [{low:.4f}, {high:.4f}]"
    two = dict(zip(header, table_row(text, "tiny (train.synergic_weight=1)")))
    assert " ± " in two["AUC"] and "[" not in two["AUC"]


def test_sdl_vs_ensemble_is_synergic_compare_of_each_seed(tiny_recipe, tmp_path):
    from synergic.report.evidence import sdl_ensemble_pairs

    folder = tmp_path / "runs"
    for seed in (0, 1):
        make_scored_run(folder / "ensemble" / f"seed{seed}", tiny_recipe,
                        ["train.synergic_weight=0"], LABELS, scores(seed, 0.25), seed=seed)
        make_scored_run(folder / "sdl" / f"seed{seed}", tiny_recipe,
                        ["train.synergic_weight=3"], LABELS, scores(seed + 10, 0.4), seed=seed)
    # SDL^3 has no ensemble of three beside it; a different learning rate is another experiment
    make_scored_run(folder / "sdl3" / "seed0", tiny_recipe,
                    ["model.components=3", "train.synergic_weight=3"], LABELS, scores(20, 0.4))
    make_scored_run(folder / "lr" / "seed0", tiny_recipe,
                    ["train.synergic_weight=3", "train.optimizer.lr=0.5"], LABELS, scores(21, 0.4))
    output = tmp_path / "report.md"
    result = CliRunner().invoke(cli, ["report", str(folder), "-o", str(output), "--json",
                                      "--n-bootstrap", "200"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    runs, _, _ = find_runs([folder])
    pairs = sdl_ensemble_pairs(group_runs(runs))
    assert [(a.runs[0].run_dir.parent.name, b.runs[0].run_dir.parent.name)
            for a, b in pairs] == [("ensemble", "sdl")]
    assert [(c["seed_a"], c["seed_b"]) for c in shown["comparisons"]] == [(0, 0), (1, 1)]
    text = output.read_text()
    for seed, comparison in enumerate(shown["comparisons"]):
        ensemble, sdl = folder / "ensemble" / f"seed{seed}", folder / "sdl" / f"seed{seed}"
        compared = CliRunner().invoke(cli, ["compare", str(ensemble), str(sdl), "--json",
                                            "--n-bootstrap", "200"])
        expected = json.loads(compared.output)
        for key in ("a", "b", "difference", "ci", "p_value"):
            assert comparison[key] == expected[key], key
        assert 0.0 < expected["p_value"] < 1.0 and expected["ci"][0] < expected["ci"][1]
        line = (f"| {expected['a']:.4f} | {expected['b']:.4f} | {expected['difference']:+.4f} "
                f"[{expected['ci'][0]:+.4f}, {expected['ci'][1]:+.4f}] | "
                f"{expected['p_value']:.4g} |")
        assert sum(line in row for row in text.splitlines()) == 1, line
    assert "## SDL vs ensemble (paired, on the same test images)" in text
    assert "200 resamples" in text


def test_calibration_entries_and_figure(tiny_recipe, tmp_path):
    validation = (LABELS, scores(99, 0.3))
    written = [
        make_scored_run(tmp_path / "runs" / "a" / f"seed{seed}", tiny_recipe, [], LABELS,
                        scores(seed, 0.3), seed=seed, validation=validation)
        for seed in (0, 1)
    ]
    report = write_report([tmp_path / "runs"], paper=False)
    text = report.path.read_text()
    assert "## Thresholds and calibration" in text
    with Image.open(report.figures["calibration"]) as image:
        assert image.format == "PNG"
    assert "![Reliability diagram](report_calibration.png)" in text
    section = text.split("## Thresholds and calibration")[1]
    header = [c.strip() for c in next(line for line in section.splitlines()
                                      if line.startswith("| run |")).strip("|").split("|")]
    # no prior correction recorded: no such columns
    assert header == ["run", "Brier", "ECE", "threshold (Youden, validation)",
                      "sensitivity at it", "specificity at it",
                      "specificity at 89 % sensitivity"]
    row = [c.strip() for c in next(line for line in section.splitlines()
                                   if line.startswith("| tiny |")).strip("|").split("|")]
    values = dict(zip(header, row))
    assert values["Brier"] == format_stat(mean_std([m["calibration"]["brier"] for m in written]))
    assert values["ECE"] == format_stat(mean_std([m["calibration"]["ece"] for m in written]))
    youden = [m["threshold"]["youden"] for m in written]
    assert youden[0] == youden[1]  # chosen on the same validation scores
    assert values["threshold (Youden, validation)"] == format_stat(mean_std(youden))
    at_it = [m["threshold"]["test_at_youden"]["specificity"] for m in written]
    assert values["specificity at it"] == format_stat(mean_std(at_it))


def test_a_cross_validation_is_summarised_from_its_summary(tiny_recipe, tmp_path):
    from synergic.cv import _write_json, plan_cv, summarize_cv
    from synergic.stats import t_interval

    cv_dir = tmp_path / "cv"
    plan = plan_cv(tiny_recipe, folds=3, output=cv_dir)
    aucs = [0.61, 0.7, 0.66]
    for run, auc in zip(plan.runs, aucs):
        run.run_dir.mkdir(parents=True)
        save_recipe(run.recipe, run.run_dir / "recipe.yaml")
        (run.run_dir / "metrics.json").write_text(json.dumps(
            {"test": {"auc": auc, "ap": auc - 0.2}, "classes": CLASSES}))
    # before summary.json: the cross-validation has not finished
    with pytest.raises(SynergicError, match=r"nothing to report: .* without summary.json: it "
                       "has not finished; run the same synergic cv command again$"):
        write_report([cv_dir], tmp_path / "unfinished.md")
    _write_json(cv_dir / "summary.json", summarize_cv(plan, description={"recipe": "tiny"}))

    report = write_report([cv_dir], tmp_path / "r.md")
    assert not report.groups and len(report.cross_validations) == 1 and not report.notes
    text = report.path.read_text()
    assert "### tiny: 3 folds x 1 repeat" in text
    low, high = t_interval(aucs)
    auc = next(line for line in text.splitlines() if line.startswith("| AUC |"))
    assert auc == (f"| AUC | {format_stat(mean_std(aucs))} | [{low:.4f}, {high:.4f}] | 3 |")
    assert text.index("| AP |") < text.index("| AUC |")  # Table 1's order
    assert "optimistic" in text
