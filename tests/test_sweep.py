from __future__ import annotations

import json
import statistics

import pytest
from click.testing import CliRunner
from helpers import SigtermAtLog
from PIL import Image

from synergic.cli import cli, main
from synergic.errors import SynergicError
from synergic.recipe import load_recipe, save_recipe
from synergic.sweep import (
    SweepCellError,
    SweepRun,
    format_stat,
    mean_std,
    parse_grid,
    plan_sweep,
    run_state,
    run_sweep,
)

# Three steps, a checkpoint after the second (the tiny recipe logs every step).
FAST = ["train.iterations=3", "train.eval_every=3", "train.checkpoint_every=2"]


def test_parse_grid_splits_values_outside_brackets_and_quotes():
    axis = parse_grid("train.synergic_weight=0, 1.5,3")
    assert axis.key == "train.synergic_weight" and axis.texts == ("0", "1.5", "3")
    assert parse_grid('data.options={a: 1, b: 2},"x,y",[1, 2]').texts == (
        "{a: 1, b: 2}", '"x,y"', "[1, 2]"
    )
    for bad, words in [("train.synergic_weight", "KEY=V1,V2"), ("=1,2", "KEY=V1,V2"),
                       ("train.synergic_weight=0,,3", "empty"), ("model.components=1,2,1", "twice"),
                       ("train..lr=1", "dotted")]:
        with pytest.raises(SynergicError, match=words):
            parse_grid(bad)


def test_plan_sweep_names_cells_and_seeds(tiny_recipe, tmp_path):
    runs = plan_sweep(tiny_recipe, ["train.synergic_weight=0,3", "model.components=1,2"],
                      seeds=2, overrides=["seed=5"], output=tmp_path / "sweep")
    assert len(runs) == 8
    assert [r.run_dir.relative_to(tmp_path / "sweep").as_posix() for r in runs[:4]] == [
        "train.synergic_weight=0,model.components=1/seed5",
        "train.synergic_weight=0,model.components=1/seed6",
        "train.synergic_weight=0,model.components=2/seed5",
        "train.synergic_weight=0,model.components=2/seed6",
    ]
    last = runs[-1]
    last_recipe = last.recipe
    assert (last_recipe.train.synergic_weight, last_recipe.model.components) == (3.0, 2)
    assert last_recipe.seed == 6
    # Values are YAML, as with --set; a value with a "/" cannot leave the sweep folder.
    weights = plan_sweep(tiny_recipe, ["model.backbone.weights=a/b.pt"], output=tmp_path / "s2")
    assert weights[0].recipe.model.backbone.weights == "a/b.pt"
    assert weights[0].run_dir.parent.parent == tmp_path / "s2"


def test_plan_sweep_errors_are_one_line_and_name_the_grid(tiny_recipe, tmp_path):
    with pytest.raises(SynergicError, match=r"--grid train.synergic_wieght .*"
                                            r"did you mean 'train.synergic_weight'"):
        plan_sweep(tiny_recipe, ["train.synergic_wieght=0,3"], output=tmp_path)
    with pytest.raises(SynergicError, match=r"--grid train.synergic_weight \(value -1\).*>= 0"):
        plan_sweep(tiny_recipe, ["train.synergic_weight=0,-1"], output=tmp_path)
    with pytest.raises(SynergicError, match="both in --set and in --grid"):
        plan_sweep(tiny_recipe, ["model.components=1,2"], overrides=["model.components=3"],
                   output=tmp_path)
    with pytest.raises(SynergicError, match="given twice"):
        plan_sweep(tiny_recipe, ["model.components=1", "model.components=2"], output=tmp_path)
    with pytest.raises(SynergicError, match="select-metric 'accurcy' .*did you mean 'accuracy'"):
        run_sweep(tiny_recipe, ["model.components=1"], output=tmp_path, select_metric="accurcy")


def test_sweep_command_reports_a_user_error_in_one_line(tiny_recipe, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", str(tiny_recipe), "--grid", "train.synergic_wieght=0,3",
              "--output", str(tmp_path / "s")])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()  # nothing ran


def test_a_failing_cell_stops_the_sweep_and_is_named(tiny_recipe, tmp_path):
    output = tmp_path / "sweep"
    grid = ["train.sampler.options={bogus: 1},{}"]
    failing, following = plan_sweep(tiny_recipe, grid, overrides=FAST, output=output)
    with pytest.raises(SweepCellError, match=r"^sweep cell train.sampler.options=\S+ seed 0 "
                                             r"failed: train.sampler: .*bogus") as error:
        run_sweep(tiny_recipe, grid, overrides=FAST, output=output)
    assert error.value.run.cell == failing.cell and "\n" not in str(error.value)
    assert not following.run_dir.exists()  # the next cell never ran
    assert not (output / "summary.json").exists()


def test_sweep_skips_finished_resumes_interrupted_and_summarises(tiny_recipe, tmp_path):
    output = tmp_path / "sweep"
    grid = ["train.synergic_weight=0,3"]
    options = dict(seeds=2, overrides=FAST, output=output)
    planned = {(r.cell, r.seed): r for r in plan_sweep(tiny_recipe, grid, **options)}
    finished = planned[("train.synergic_weight=0", 0)]
    interrupted = planned[("train.synergic_weight=3", 0)]
    started = planned[("train.synergic_weight=3", 1)]

    # The first attempt is stopped during its third run.
    def stop_in(run):
        return [SigtermAtLog()] if run.cell == interrupted.cell else []

    with pytest.raises(SweepCellError, match=r"^sweep stopped in cell train.synergic_weight=3 "
                                             r"seed 0 \(stopped by SIGTERM at step 2.*\): "
                                             r"run the same sweep command again"):
        run_sweep(tiny_recipe, grid, callbacks=stop_in, **options)
    states = [run_state(r.run_dir) for r in planned.values()]
    assert states == ["finished", "finished", "interrupted", "empty"]
    finished_log = (finished.run_dir / "log.csv").read_text()
    logged_before = (interrupted.run_dir / "log.csv").read_text().splitlines()
    steps = [row.split(",")[0] for row in logged_before[1:]]
    assert steps == ["1", "2"]  # stopped at the checkpoint
    # A run that died before its first checkpoint: only its recipe.yaml is there.
    save_recipe(started.recipe, started.run_dir / "recipe.yaml")
    assert run_state(started.run_dir) == "started"

    events = []
    summary = run_sweep(tiny_recipe, grid, **options,
                        on_event=lambda action, run, i, n: events.append(
                            (action, run.cell, run.seed)))
    assert [e for e in events if e[0] != "done"] == [
        ("skip", "train.synergic_weight=0", 0), ("skip", "train.synergic_weight=0", 1),
        ("resume", "train.synergic_weight=3", 0), ("start", "train.synergic_weight=3", 1),
    ]
    assert (finished.run_dir / "log.csv").read_text() == finished_log  # not run again
    resumed_log = (interrupted.run_dir / "log.csv").read_text().splitlines()
    assert resumed_log[:3] == logged_before and resumed_log[3].startswith("3,")  # continued
    assert all(run_state(r.run_dir) == "finished" for r in planned.values())

    # The summary is the runs' metrics.json, mean and sample std over the two seeds.
    assert json.loads((output / "summary.json").read_text()) == json.loads(json.dumps(summary))
    cells = [c["cell"] for c in summary["cells"]]
    assert cells == ["train.synergic_weight=0", "train.synergic_weight=3"]
    for cell in summary["cells"]:
        runs = [planned[(cell["cell"], seed)] for seed in (0, 1)]
        metrics = [json.loads((r.run_dir / "metrics.json").read_text()) for r in runs]
        run_dirs = [r["run_dir"] for r in cell["runs"]]
        assert run_dirs == [f"{cell['cell']}/seed0", f"{cell['cell']}/seed1"]
        for name in ("ap", "ap_trapezoid", "accuracy", "auc"):
            values = [m["test"][name] for m in metrics]
            assert cell["test"][name]["mean"] == pytest.approx(statistics.fmean(values), abs=1e-12)
            assert cell["test"][name]["std"] == pytest.approx(statistics.stdev(values), abs=1e-12)
        assert cell["validation"]["ap"]["values"] == [m["validation"]["ap"] for m in metrics]
    best = max(summary["cells"], key=lambda c: c["validation"]["ap"]["mean"])
    assert summary["selected"] == best["cell"]
    markdown = (output / "summary.md").read_text()
    assert f"**{best['cell']}** (selected)" in markdown
    assert format_stat(best["test"]["ap"]) in markdown

    # Run again: everything is kept, nothing trains.
    events.clear()
    run_sweep(tiny_recipe, grid, **options,
              on_event=lambda action, run, i, n: events.append(action))
    assert events == ["skip"] * 4

    # A finished run is not silently reused for another recipe.
    with pytest.raises(SweepCellError, match="finished with another recipe .*train.iterations"):
        run_sweep(tiny_recipe, grid, seeds=2, overrides=["train.iterations=4"], output=output)

    # The report of the sweep: its table holds the same numbers, its figures are PNGs.
    report = tmp_path / "report" / "report.md"
    result = CliRunner().invoke(cli, ["report", str(output), "--output", str(report)])
    assert result.exit_code == 0, result.output
    text = report.read_text()
    for cell in summary["cells"]:
        label = f"tiny ({cell['cell']})"
        row = next(line for line in text.splitlines() if line.startswith("| ") and label in line)
        for name in ("ap", "ap_trapezoid", "accuracy", "auc"):
            assert format_stat(cell["test"][name]) in row
        assert format_stat(cell["validation"]["ap"]) in row
    assert "(selected on validation)" in text
    assert "paper (reported)" not in text  # synthetic data: the paper's ISIC 2016 rows stay out
    assert "## Notes" not in text  # the ROC labels, read from the data set, reproduce every AUC
    for name in ("report_roc.png", "report_lambda.png"):
        with Image.open(report.parent / name) as image:
            image.verify()
    assert not (report.parent / "report_components.png").exists()  # components do not differ


def test_sweep_without_validation_selects_nothing(tmp_path):
    from synergic.sweep import summarize_sweep

    runs = []
    for ap, seed in [(0.5, 0), (0.7, 1)]:
        run_dir = tmp_path / "cell" / f"seed{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.json").write_text(json.dumps({"test": {"ap": ap, "auc": None}}))
        runs.append(SweepRun("cell", {}, seed, run_dir, load_recipe("demo")))
    summary = summarize_sweep(runs, tmp_path)
    assert summary["selected"] is None and "no validation split" in summary["selection_note"]
    assert summary["cells"][0]["test"]["ap"] == mean_std([0.5, 0.7])
    assert summary["cells"][0]["test"]["auc"]["mean"] is None  # NaN is null in metrics.json


def test_mean_std_and_format():
    assert mean_std([1.0, 2.0, None]) == {"mean": 1.5, "std": pytest.approx(0.7071067811865476),
                                         "n": 2, "values": [1.0, 2.0, None]}
    assert format_stat(mean_std([0.5])) == "0.5000"
    assert format_stat(mean_std([0.5, 0.7])) == "0.6000 ± 0.1414"
    assert format_stat(mean_std([None])) == "n/a"


def test_sweep_runs_as_submitit_jobs_through_the_launcher(tiny_recipe, tmp_path, monkeypatch):
    """`synergic sweep --launcher slurm` hands each run to a submitit executor: here submitit's
    local executor stands in for Slurm (the command builds it with
    synergic.cli.options.make_executor, shared with synergic cv)."""
    import importlib

    submitit = pytest.importorskip("submitit")
    options_module = importlib.import_module("synergic.cli.options")
    for name, value in {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                        "SYNERGIC_DISABLE_PLUGINS": "1"}.items():
        monkeypatch.setenv(name, value)
    local = CliRunner().invoke(cli, ["sweep", str(tiny_recipe), "--output", str(tmp_path / "x"),
                                     "--launcher-option", "timeout_min=5"])
    assert local.exit_code == 2 and "--launcher-option needs --launcher slurm" in local.output
    assert not (tmp_path / "x").exists()
    made = []

    def local_executor(launcher, output, options):
        made.append((launcher, output, tuple(options)))
        return submitit.LocalExecutor(folder=tmp_path / "submitit")

    monkeypatch.setattr(options_module, "make_executor", local_executor)
    output = tmp_path / "sweep"
    result = CliRunner().invoke(cli, [
        "sweep", str(tiny_recipe), "--grid", "train.synergic_weight=0,3", "--output", str(output),
        "--launcher", "slurm", "--launcher-option", "timeout_min=5",
        *(arg for key in FAST for arg in ("--set", key)),
    ])
    assert result.exit_code == 0, result.output
    assert made == [("slurm", output, ("timeout_min=5",))]
    assert result.output.count("submitted -> ") == 2 and result.output.count(": done") == 2
    summary = json.loads((output / "summary.json").read_text())
    assert [len(cell["runs"]) for cell in summary["cells"]] == [1, 1]
    assert all(run_state(output / cell["runs"][0]["run_dir"]) == "finished"
               for cell in summary["cells"])
    # the same command again keeps both runs
    again = CliRunner().invoke(cli, [
        "sweep", str(tiny_recipe), "--grid", "train.synergic_weight=0,3", "--output", str(output),
        "--launcher", "slurm", *(arg for key in FAST for arg in ("--set", key)),
    ])
    assert again.exit_code == 0 and again.output.count("finished earlier, kept") == 2
