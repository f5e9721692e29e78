"""A sweep whose cells are cross-validations (issue 15: `synergic sweep --folds K`): each cell's
folder is the cross-validation `synergic cv` would make of the cell's recipe, the sweep's summary
holds each cell's mean, std and t-interval over its folds, a stopped sweep resumes, and `synergic
report` shows the cells with their intervals."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers import SigtermAtLog, read_csv

from synergic.cli import cli, main
from synergic.cv import plan_cv
from synergic.errors import SynergicError
from synergic.stats import mean_std_interval
from synergic.sweep import (
    SweepCellError,
    format_stat_interval,
    plan_cv_sweep,
    run_state,
    run_sweep,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Three steps, a checkpoint after the second (the tiny recipe logs every step); no bootstrap.
FAST = ["train.iterations=3", "train.eval_every=3", "train.checkpoint_every=2",
        "train.n_bootstrap=0"]
GRID = "train.synergic_weight=0,3"
CELLS = ["train.synergic_weight=0", "train.synergic_weight=3"]


def test_each_cell_is_the_cross_validation_synergic_cv_makes_of_its_recipe(tiny_recipe, tmp_path):
    cells = plan_cv_sweep(tiny_recipe, [GRID], folds=2, repeats=2, overrides=FAST,
                          output=tmp_path / "sweep")
    assert [cell.cell for cell in cells] == CELLS
    for cell, weight in zip(cells, ("0", "3")):
        alone = plan_cv(tiny_recipe, folds=2, repeats=2,
                        overrides=[*FAST, f"train.synergic_weight={weight}"],
                        output=tmp_path / "sweep" / cell.cell)
        # the same folds, recipes (so identities) and folders as `synergic cv --set ...`
        assert [r.recipe for r in cell.plan.runs] == [r.recipe for r in alone.runs]
        assert [r.run_dir for r in cell.plan.runs] == [r.run_dir for r in alone.runs]
        assert [r.label for r in cell.plan.runs] == [
            f"{cell.cell} repeat {r} fold {f}" for r in range(2) for f in range(2)
        ]
    assert not (tmp_path / "sweep").exists()  # planning runs nothing


@pytest.mark.parametrize("arguments, words", [
    (["--folds", "2", "--seeds", "2"], "--seeds 2 with --folds 2: .*--repeats"),
    (["--repeats", "2"], "--repeats and --group-by apply to cross-validations: add --folds"),
    (["--folds", "20"],
     r"sweep cell train.synergic_weight=0: class 0 \(benign\) has .* fewer than the 20"),
    (["--folds", "2", "--group-by", "patient"], "sweep cell .*--group-by patient: .*has no groups"),
    (["--folds", "2", "--launcher-option", "timeout_min=5"], "needs --launcher slurm"),
])
def test_sweep_with_folds_refuses_in_one_line(tiny_recipe, tmp_path, capsys, arguments, words):
    import re

    with pytest.raises(SystemExit) as exit_:
        main(["sweep", str(tiny_recipe), "--grid", GRID, *arguments,
              "--output", str(tmp_path / "s")])
    assert exit_.value.code in (1, 2)
    err = capsys.readouterr().err.strip()
    assert re.search(words, err) and "Traceback" not in err
    if exit_.value.code == 1:
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_a_sweep_of_cross_validations_resumes_and_summarises_each_cell(tiny_recipe, tmp_path):
    output = tmp_path / "sweep"
    # The first attempt is stopped in the second cell's first fold.
    with pytest.raises(SweepCellError, match=r"^sweep stopped in cell train.synergic_weight=3 "
                                             r"repeat 0 fold 0 \(stopped by SIGTERM at step 2"):
        run_sweep(tiny_recipe, [GRID], folds=2, overrides=FAST, output=output,
                  callbacks=lambda run: [SigtermAtLog()] if run.cell == CELLS[1] else [])
    states = [run_state(output / cell / "repeat-0" / f"fold-{f}") for cell in CELLS
              for f in range(2)]
    assert states == ["finished", "finished", "interrupted", "empty"]
    assert not (output / "summary.json").exists() and not (output / CELLS[0] / "summary.json"
                                                            ).exists()
    report = CliRunner().invoke(cli, ["report", str(output), "-o", str(tmp_path / "r.md")])
    assert report.exit_code == 1
    assert "a sweep with --folds that has not finished" in str(report.exception)
    # A plain sweep into the same folder would mix two kinds of cell.
    with pytest.raises(SynergicError, match=r"holds a sweep of cross-validations \(synergic "
                                            r"sweep --folds\): use another --output"):
        run_sweep(tiny_recipe, [GRID], overrides=FAST, output=output)

    # The same command again finishes it: kept, resumed, started.
    result = CliRunner().invoke(cli, ["sweep", str(tiny_recipe), "--grid", GRID, "--folds", "2",
                                      "--output", str(output),
                                      *(a for o in FAST for a in ("--set", o))])
    assert result.exit_code == 0, result.output
    assert result.output.count("finished earlier, kept") == 2
    assert f"[3/4] {CELLS[1]} repeat 0 fold 0: resuming" in result.output
    assert "95 % t-interval" in " ".join(result.output.split())  # a narrow table folds its title
    log = read_csv(output / CELLS[1] / "repeat-0" / "fold-0" / "log.csv")
    assert [row[0] for row in log[1:]] == ["1", "2", "3"]  # continued at step 3, not restarted

    summary = json.loads((output / "summary.json").read_text())
    assert (summary["folds"], summary["repeats"]) == (2, 1)
    assert [cell["cell"] for cell in summary["cells"]] == CELLS
    for cell in summary["cells"]:
        folder = output / cell["cell"]
        assert cell["cv_dir"] == cell["cell"]
        assert [r["run_dir"] for r in cell["runs"]] == [f"{cell['cell']}/repeat-0/fold-{f}"
                                                        for f in range(2)]
        # the cell's folder is a cross-validation like synergic cv's: its summary, its oof
        cell_summary = json.loads((folder / "summary.json").read_text())
        assert cell_summary["overrides"] == [*FAST, cell["cell"]]
        assert cell_summary["test"] == cell["test"]
        assert cell_summary["validation"] == cell["validation"]
        metrics = [json.loads((output / r["run_dir"] / "metrics.json").read_text())
                   for r in cell["runs"]]
        for name in ("ap", "auc", "accuracy"):
            assert cell["test"][name] == mean_std_interval([m["test"][name] for m in metrics])
        oof = read_csv(folder / "oof_predictions.csv")
        assert oof[0] == ["image", "fold", "repeat", "benign", "malignant"]
        assert len(oof) - 1 == 24  # every training image of the tiny data once
    best = max(summary["cells"], key=lambda c: (c["test"]["ap"]["mean"], c is summary["cells"][0]))
    assert summary["selected"] == best["cell"]
    assert "held-out-fold ap" in summary["selection_note"]
    markdown = (output / "summary.md").read_text()
    assert f"**{best['cell']}** (selected)" in markdown
    assert format_stat_interval(best["test"]["auc"]) in markdown

    # The report shows each cell with its mean ± std and t-interval over its folds.
    report_path = tmp_path / "report" / "report.md"
    result = CliRunner().invoke(cli, ["report", str(output), "--output", str(report_path)])
    assert result.exit_code == 0, result.output
    text = report_path.read_text()
    for cell in summary["cells"]:
        row = next(line for line in text.splitlines()
                   if line.startswith("| ") and cell["cell"] in line)
        assert ("(selected)" in row) == (cell["cell"] == summary["selected"])
        for name in ("ap", "ap_trapezoid", "accuracy", "auc"):
            assert format_stat_interval(cell["test"][name]) in row

    # Once more: everything is kept, nothing trains; a failing cell names cell and fold.
    events = []
    again = run_sweep(tiny_recipe, [GRID], folds=2, overrides=FAST, output=output,
                      on_event=lambda action, run, i, n: events.append(action))
    assert events == ["skip"] * 4 and json.loads(json.dumps(again)) == summary
    with pytest.raises(SweepCellError, match=r"^sweep cell train.sampler.options=\S+ repeat 0 "
                                             r"fold 0 failed: train.sampler: .*bogus"):
        run_sweep(tiny_recipe, ["train.sampler.options={bogus: 1}"], folds=2, overrides=FAST,
                  output=tmp_path / "failing")
