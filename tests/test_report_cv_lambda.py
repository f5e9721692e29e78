"""`synergic report` on a sweep of cross-validations over lambda (`synergic sweep --folds`): the
metric against lambda (the paper's Fig. 4) from the cells' means over their folds, with their 95 %
t-intervals as error bars. Built from summaries as the sweep writes them, without training."""

from __future__ import annotations

import json

import pytest

from synergic.stats import mean_std_interval

FOLD_VALUES = {  # cell -> held-out-fold AP and validation AP of its three fold runs
    0.0: ([0.40, 0.44, 0.45], [0.50, 0.52, 0.57]),
    3.0: ([0.52, 0.58, 0.61], [0.61, 0.60, 0.66]),
    5.0: ([0.90, 0.97, 1.00], [0.55, 0.58, 0.59]),  # its interval is clipped at 1
}


def write_cv_sweep(folder, weights=FOLD_VALUES, components=2):
    """A finished `synergic sweep --folds 3` over train.synergic_weight: the sweep's and each
    cell's summary.json."""
    cells = []
    for weight, (held_out, validation) in weights.items():
        name = f"train.synergic_weight={weight:g}"
        (folder / name).mkdir(parents=True)
        cell = {"folds": 3, "repeats": 1, "recipe": "tiny.yaml", "primary_metric": "ap",
                "test": {"ap": mean_std_interval(held_out)},
                "validation": {"ap": mean_std_interval(validation)}}
        (folder / name / "summary.json").write_text(json.dumps(cell))
        cells.append({"cell": name, "cv_dir": name, "test": cell["test"],
                      "validation": cell["validation"], "runs": [],
                      "settings": {"train.synergic_weight": weight,
                                   "model.components": components}})
    summary = {"recipe": "tiny.yaml", "folds": 3, "repeats": 1, "select_metric": "ap",
               "cells": cells, "selected": cells[-1]["cell"], "selection_note": "best"}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_the_lambda_figure_of_a_cv_sweep_shows_each_cells_mean_and_t_interval(
    tmp_path, monkeypatch
):
    import synergic.report.figures as figures
    from synergic.report import write_report

    sweep = write_cv_sweep(tmp_path / "sweep")
    drawn = []
    draw = figures._draw_against_lambda
    monkeypatch.setattr(figures, "_draw_against_lambda",
                        lambda panels, path: drawn.append(panels) or draw(panels, path))
    report = write_report([sweep], tmp_path / "report.md")

    assert report.figures["cv_lambda"] == tmp_path / "report_cv_lambda.png"
    assert report.figures["cv_lambda"].stat().st_size > 0
    assert "![ap against lambda, cross-validated](report_cv_lambda.png)" in report.path.read_text()
    (panels,) = drawn
    assert [title.splitlines()[0] for _, title, _ in panels] == [
        "ap against lambda, validation set", "ap against lambda, held-out folds"]
    for (_, _, lines), split in zip(panels, (1, 0)):
        (points,) = lines.values()  # one line: the sweep varies lambda only
        expected = []
        for weight, values in sorted(FOLD_VALUES.items()):
            stat = mean_std_interval(values[split])
            low, high = stat["ci"]
            expected += [weight, stat["mean"], stat["mean"] - low, high - stat["mean"]]
        assert [v for x, mean, bar in points for v in (x, mean, *bar)] == pytest.approx(expected)
    (held_out,) = panels[1][2].values()
    _, _, (below, above) = held_out[2]  # lambda 5: 1 clips its held-out interval
    assert 0 < above < below


def test_cv_sweeps_of_other_keys_draw_no_lambda_figure_and_two_sweeps_two_lines(
    tmp_path, monkeypatch
):
    import synergic.report.figures as figures
    from synergic.report import write_report
    from synergic.report.runs import find_cross_validations

    one_lambda = write_cv_sweep(tmp_path / "one", weights={3.0: FOLD_VALUES[3.0]})
    report = write_report([one_lambda], tmp_path / "one.md")
    assert "cv_lambda" not in report.figures

    first = write_cv_sweep(tmp_path / "n2")
    second = write_cv_sweep(tmp_path / "n3", components=3)
    found, _, _ = find_cross_validations([first, second])
    assert [cv.settings["model.components"] for cv in found] == [2] * 3 + [3] * 3
    drawn = []
    monkeypatch.setattr(figures, "_draw_against_lambda",
                        lambda panels, path: drawn.append(panels))
    figures._cv_lambda_figure(found, tmp_path / "two.png", "ap")
    assert list(drawn[0][0][2]) == ["n2, components=2", "n3, components=3"]
