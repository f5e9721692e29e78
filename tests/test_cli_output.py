"""Output that reads well anywhere (issue 14, item 3) and a command line that starts without torch
(item 10).

`synergic run recipe > out.txt`: full tables (no "…", no wrapped rows), plain progress lines at a
sensible rate; `--quiet` prints only the result; `--json` prints one JSON document on stdout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from synergic.cli import cli
from synergic.cli import progress as progress_module
from synergic.cli.output import comparison_line
from synergic.cli.progress import TrainingProgress

REPO = Path(__file__).resolve().parents[1]
METRICS = ["ap", "ap_trapezoid", "auc", "accuracy", "sensitivity", "specificity"]
ANSI = re.compile(r"\x1b\[")


def synergic(*args, cwd: Path) -> tuple[str, str]:
    """Run the installed command as a user's shell would, stdout and stderr to files."""
    out, err = cwd / "stdout.txt", cwd / "stderr.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("COLUMNS", None)  # a shell redirect has no terminal width to give
    with out.open("w") as stdout, err.open("w") as stderr:
        code = subprocess.call([sys.executable, "-m", "synergic", *map(str, args)], cwd=cwd,
                               stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env)
    assert code == 0, err.read_text()
    return out.read_text(), err.read_text()


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, f"{args} failed:\n{result.output}\n{result.exception!r}"
    return result


@pytest.fixture(scope="module")
def redirected_run(tmp_path_factory) -> dict:
    """`synergic run tiny.yaml --output run > stdout.txt 2> stderr.txt`, once for the module."""
    from tiny_recipe import TINY_RECIPE

    folder = tmp_path_factory.mktemp("redirected")
    (folder / "tiny.yaml").write_text(TINY_RECIPE)
    stdout, stderr = synergic("run", "tiny.yaml", "--output", "run", cwd=folder)
    return {"folder": folder, "run": folder / "run", "stdout": stdout, "stderr": stderr}


def test_a_redirected_run_prints_the_whole_table_one_row_per_line(redirected_run):
    stdout, run = redirected_run["stdout"], redirected_run["run"]
    assert "…" not in stdout and not ANSI.search(stdout)
    # nothing before the title: no progress bar's residue on stdout
    assert stdout.splitlines()[0].rstrip() == "test metrics of tiny"
    header = next(line for line in stdout.splitlines() if "┃" in line)
    assert [cell.strip() for cell in header.strip().strip("┃").split("┃")] == ["model", *METRICS]
    rows = [line for line in stdout.splitlines() if "│" in line]
    assert [row.strip().strip("│").split("│")[0].strip() for row in rows] == [
        "aggregate", "component 1", "component 2"
    ]
    metrics = json.loads((run / "metrics.json").read_text())
    cells = [cell.strip() for cell in rows[0].strip().strip("│").split("│")]
    intervals = metrics["test_ci"]  # value [95 % interval], see synergic.stats
    expected = [
        "n/a" if v is None else f"{v:.4f}" + (
            "" if None in intervals[k] else f" [{intervals[k][0]:.2f}, {intervals[k][1]:.2f}]"
        )
        for k, v in metrics["test"].items()
    ]
    assert cells[1:] == expected


def test_a_redirected_run_says_how_the_aggregate_compares_and_how_to_run_the_ensemble(
    redirected_run,
):
    stdout = redirected_run["stdout"]
    metrics = json.loads((redirected_run["run"] / "metrics.json").read_text())
    components = ", ".join(
        "n/a" if c["ap"] is None else f"{c['ap']:.4f}" for c in metrics["test_components"]
    )
    assert f"(components: {components})" in stdout
    assert "the aggregate's AP is " in stdout
    assert "synergic run tiny.yaml --set train.synergic_weight=0" in stdout
    assert f"run directory: {Path('run')}" in stdout


def test_a_redirected_run_prints_plain_progress_lines(redirected_run):
    stderr = redirected_run["stderr"]
    assert "…" not in stderr and not ANSI.search(stderr)
    steps = [int(m.group(1)) for m in re.finditer(r"^training step (\d+)/6 \(\d+ %\) loss=", stderr,
                                                    re.MULTILINE)]
    # log_every 1 and 6 steps: each step passes another tenth, the last one is always shown
    assert steps == [1, 2, 3, 4, 5, 6]
    assert re.search(r"^step 3: validation ap=", stderr, re.MULTILINE)
    assert re.search(r"^step 6: validation ap=", stderr, re.MULTILINE)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def plain_progress_lines(capsys, total: int, seconds_per_step: float) -> list[tuple[int, float]]:
    """Feed a plain (non-terminal) display one log row per step; (step, time) of each line."""
    clock = FakeClock()
    display = TrainingProgress("training", total, images_per_step=8, clock=clock)
    assert not display.interactive  # capsys's stderr is not a terminal
    shown = []
    with display:
        for step in range(1, total + 1):
            clock.now += seconds_per_step
            display.on_log(None, {"step": step, "loss": 0.5, "lr": 0.01,
                                  "seconds_per_step": seconds_per_step})
            printed = capsys.readouterr().err
            if printed:
                assert printed.count("\n") == 1, printed
                assert printed.startswith(f"training step {step}/{total} ")
                assert "img/s" in printed and "eta" in printed
                shown.append((step, clock.now))
    return shown


def test_plain_progress_prints_each_tenth_of_a_quick_run(capsys):
    shown = plain_progress_lines(capsys, total=200, seconds_per_step=0.1)
    assert [step for step, _ in shown] == list(range(20, 201, 20))


def test_plain_progress_prints_at_least_every_30_seconds_of_a_slow_run(capsys):
    shown = plain_progress_lines(capsys, total=100, seconds_per_step=7.0)
    steps = [step for step, _ in shown]
    assert steps[-1] == 100
    times = [0.0] + [t for _, t in shown]
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert max(gaps) <= progress_module.PLAIN_INTERVAL_S + 7.0
    assert len(shown) < 100 / 2  # far fewer lines than steps


def test_quiet_progress_prints_nothing(capsys):
    display = TrainingProgress("training", 10, enabled=False)
    with display:
        display.on_log(None, {"step": 10, "loss": 0.5, "lr": 0.01, "seconds_per_step": 1.0})
    assert capsys.readouterr() == ("", "")


def test_the_comparison_line_names_the_components_the_aggregate_trails():
    aggregate = {"ap": 0.70}
    assert comparison_line(aggregate, [{"ap": 0.65}, {"ap": 0.75}], "ap") == (
        "the aggregate's AP is 0.7000 (components: 0.6500, 0.7500): below component 2"
    )
    assert comparison_line(aggregate, [{"ap": 0.6}, {"ap": 0.7}], "ap").endswith(
        ": at least as high as every component"
    )
    assert comparison_line({"ap": None}, [{"ap": 0.6}], "ap") is None
    assert comparison_line(aggregate, [], "ap") is None
    assert comparison_line({"ap": 0.9, "balanced_accuracy": 0.5}, [{"ap": 0.1,
                           "balanced_accuracy": 0.6}], "balanced_accuracy") == (
        "the aggregate's balanced_accuracy is 0.5000 (components: 0.6000): below component 1"
    )


# -- --json and --quiet -------------------------------------------------------------------------


def test_run_json_prints_metrics_json_and_the_run_directory(redirected_run, tiny_recipe, tmp_path):
    result = invoke("run", tiny_recipe, "--output", tmp_path / "run", "--json")
    document = json.loads(result.stdout)
    assert document.pop("run_dir") == str(tmp_path / "run")
    assert document == json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "training step" in result.stderr  # progress still goes to stderr


def test_run_quiet_prints_only_the_run_directory(tiny_recipe, tmp_path):
    result = invoke("run", tiny_recipe, "--output", tmp_path / "run", "--quiet")
    assert result.stdout == f"{tmp_path / 'run'}\n"
    assert "training step" not in result.stderr and "validation" not in result.stderr


def test_resume_json(redirected_run):
    result = invoke("resume", redirected_run["run"], "--json")
    document = json.loads(result.stdout)
    assert document["run_dir"] == str(redirected_run["run"])
    assert list(document["test"]) == METRICS


def test_eval_json_and_quiet(redirected_run):
    run = redirected_run["run"]
    document = json.loads(invoke("eval", run, "--json").stdout)
    assert document["split"] == "test" and document["run_dir"] == str(run)
    assert list(document["aggregate"]) == METRICS and len(document["components"]) == 2
    quiet = invoke("eval", run, "--quiet").stdout
    assert quiet.count("\n") == 1 and quiet.split()[0].startswith("ap=")


def test_predict_json(redirected_run, tmp_path):
    from synergic.data.datasets.synthetic import synthetic_lesions
    from torchvision.transforms.functional import to_pil_image

    image = synthetic_lesions(root=None, split="test", num_test=1, image_size=32)[0][0]
    to_pil_image(image).save(tmp_path / "lesion.png")
    document = json.loads(invoke("predict", redirected_run["run"], tmp_path / "lesion.png",
                                 "--json").stdout)
    assert document["classes"] == ["benign", "malignant"]
    [prediction] = document["predictions"]
    assert prediction["image"].endswith("lesion.png")
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert prediction["prediction"] == max(prediction["probabilities"],
                                           key=prediction["probabilities"].get)


def test_report_json_and_quiet(redirected_run, tmp_path):
    run = redirected_run["run"]
    document = json.loads(invoke("report", run, "-o", tmp_path / "r.md", "--json").stdout)
    assert Path(document["report"]) == tmp_path / "r.md" and document["rows"] >= 1
    assert all(Path(path).is_file() for path in document["figures"].values())
    assert invoke("report", run, "-o", tmp_path / "q.md", "--quiet").stdout == (
        f"{tmp_path / 'q.md'}\n"
    )


def test_sweep_json(tiny_recipe, tmp_path):
    result = invoke("sweep", tiny_recipe, "--grid", "train.synergic_weight=0,1",
                    "--set", "train.iterations=2", "--output", tmp_path / "sweep", "--json")
    document = json.loads(result.stdout)
    assert document["sweep_dir"] == str(tmp_path / "sweep")
    assert [cell["cell"] for cell in document["cells"]] == [
        "train.synergic_weight=0", "train.synergic_weight=1"
    ]


def test_list_and_plugins_json():
    listing = json.loads(invoke("list", "--json").stdout)
    assert set(listing) == {"aggregators", "backbones", "datasets", "heads", "loggers", "samplers"}
    assert "synthetic_lesions" in [entry["name"] for entry in listing["datasets"]]
    assert "timm_models" not in listing  # counting timm's models imports timm: only when asked
    assert json.loads(invoke("list", "backbones", "--json").stdout)["timm_models"] > 100
    plugins = json.loads(invoke("plugins", "--json").stdout)
    assert all(set(p) == {"plugin", "version", "registered"} for p in plugins)


def test_a_redirected_list_keeps_every_description_whole(tmp_path):
    stdout, _ = synergic("list", "datasets", cwd=tmp_path)
    assert "…" not in stdout
    from synergic import registry

    for entry in registry.datasets.entries():
        assert entry.description in stdout


# -- startup ------------------------------------------------------------------------------------


def test_importing_the_command_line_does_not_import_torch():
    code = ("import sys, synergic.cli; "
            "print(sorted(m for m in ('torch', 'timm', 'sklearn', 'matplotlib', 'numpy', 'PIL') "
            "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    assert loaded.strip() == "[]"


def test_listing_data_sets_does_not_import_timm(tmp_path):
    code = ("import sys; from synergic.cli import main\n"
            "try: main(['list', 'datasets'])\n"
            "except SystemExit: pass\n"
            "print('timm' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=tmp_path)
    assert result.stderr.strip().splitlines()[-1] == "False"


def test_openmp_threads_sleep_when_idle_unless_the_user_chose(monkeypatch):
    from synergic.cli import quiet_openmp_threads

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    quiet_openmp_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    quiet_openmp_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_command_sets_the_policy_before_torch_starts(tmp_path):
    # OpenMP reads the variable once, when torch loads it: main() must set it before any import
    # of torch, which `synergic --version` never makes.
    probe = ("import os, sys; os.environ.pop('OMP_WAIT_POLICY', None); "
             "from synergic.cli import main\n"
             "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
             "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env=env, cwd=tmp_path, check=True)
    assert result.stdout.split()[-2:] == ["PASSIVE", "False"]
