"""The `synergic` command: run, eval, predict, list, recipe show|check, data download, --version,
--help, and the ISIC 2016 acceptance check of issue 3 against the ISIC Challenge's own scorer.

One tiny run (``tiny_run``) is trained once for the whole module; eval and predict reuse it.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import re
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from isic_scorer_support import score_with_isic, scorer_unavailable_reason
from PIL import Image

import synergic
from synergic.cli import cli, main
from synergic.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
WIDE = {"COLUMNS": "250"}  # rich wraps table cells at the terminal width
METRICS = ["ap", "ap_trapezoid", "auc", "accuracy", "sensitivity", "specificity"]


def invoke(*args: str):
    """Run the command in-process; fail with its output when it fails."""
    result = CliRunner().invoke(cli, [str(a) for a in args], env=WIDE)
    assert result.exit_code == 0, f"{args} failed:\n{result.output}\n{result.exception!r}"
    return result


def user_error(capsys, *args: str) -> str:
    """Run ``main`` (as the installed command does) expecting a user error; its message."""
    with pytest.raises(SystemExit) as caught:
        main([str(a) for a in args])
    assert caught.value.code == 1
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr, stderr
    last_line = stderr.strip().splitlines()[-1]  # after the progress messages, if any
    assert last_line.startswith("error: "), stderr
    return last_line.removeprefix("error: ")


def read_table(output: str) -> dict[str, dict[str, str]]:
    """A rich table printed by synergic: {first cell: {column: cell}}."""
    header: list[str] = []
    rows: dict[str, dict[str, str]] = {}
    for line in output.splitlines():
        if "┃" in line and not header:
            header = [cell.strip() for cell in line.strip().strip("┃").split("┃")]
        elif "│" in line and header:
            cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
            rows[cells[0]] = dict(zip(header, cells))
    return rows


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as stream:
        header, *rows = list(csv.reader(stream))
    return header, rows


# -- synergic run -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _tiny_runs() -> dict:
    return {}


@pytest.fixture
def tiny_run(tiny_recipe, _tiny_runs, tmp_path_factory) -> Path:
    """The run directory of `synergic run <tiny recipe>`, trained once per module."""
    if "dir" not in _tiny_runs:
        folder = tmp_path_factory.mktemp("tiny-run")
        recipe = folder / "tiny.yaml"
        recipe.write_text(tiny_recipe.read_text())
        out = folder / "run"
        _tiny_runs["output"] = invoke("run", recipe, "--output", out).output
        _tiny_runs["dir"], _tiny_runs["recipe"] = out, recipe
    return _tiny_runs["dir"]


def tiny_test_set():
    from synergic.data.datasets.synthetic import synthetic_lesions

    return synthetic_lesions(root=None, split="test", num_test=16, image_size=32)


def test_run_writes_the_run_directory(tiny_run, _tiny_runs):
    files = sorted(p.relative_to(tiny_run).as_posix() for p in tiny_run.rglob("*") if p.is_file())
    assert files == [
        "calibration.png", "checkpoints/best.pt", "checkpoints/last.pt", "log.csv",
        "metrics.json", "pr.png",
        "predictions.csv", "preprocessing.json", "recipe.yaml", "roc.png", "run.json",
        "splits.csv", "test_labels.csv",
    ]
    assert load_recipe(tiny_run / "recipe.yaml") == load_recipe(_tiny_runs["recipe"])
    output = _tiny_runs["output"]
    assert f"run directory: {tiny_run}" in output
    table = read_table(output)
    assert list(table) == ["aggregate", "component 1", "component 2"]
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    low, high = metrics["test_ci"]["auc"]
    assert table["aggregate"]["auc"] == f"{metrics['test']['auc']:.4f} [{low:.2f}, {high:.2f}]"


def test_test_labels_are_written_beside_the_predictions(tiny_run):
    labels = (tiny_run / "test_labels.csv").read_text().splitlines()
    predictions = (tiny_run / "predictions.csv").read_text().splitlines()
    assert labels[0] == "image,label"
    assert [row.split(",")[0] for row in labels[1:]] == [row.split(",")[0] for row in predictions[1:]]
    expected = tiny_test_set()
    assert [row.split(",")[1] for row in labels[1:]] == [expected.classes[y] for y in expected.labels]


def test_metrics_json_has_the_documented_shape(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert list(metrics["test"]) == METRICS
    assert [list(m) for m in metrics["test_components"]] == [METRICS, METRICS]
    assert metrics["classes"] == ["benign", "malignant"] and metrics["iterations"] == 6
    assert list(metrics["validation"]) == ["step", *METRICS] and metrics["validation"]["step"] == 6
    for value in metrics["test"].values():
        assert value is None or 0.0 <= value <= 1.0


def test_predictions_csv_agrees_with_metrics_json(tiny_run):
    from sklearn.metrics import roc_auc_score

    header, rows = read_csv(tiny_run / "predictions.csv")
    assert header == ["image", "benign", "malignant"]
    test_set = tiny_test_set()
    assert [row[0] for row in rows] == list(test_set.ids)
    probabilities = [[float(v) for v in row[1:]] for row in rows]
    assert all(math.isclose(sum(p), 1.0, abs_tol=1e-6) for p in probabilities)
    malignant = [p[1] for p in probabilities]
    metrics = json.loads((tiny_run / "metrics.json").read_text())["test"]
    assert math.isclose(roc_auc_score(test_set.labels, malignant), metrics["auc"], abs_tol=1e-9)
    correct = [(m > 0.5) == bool(label) for m, label in zip(malignant, test_set.labels)]
    assert math.isclose(sum(correct) / len(correct), metrics["accuracy"], abs_tol=1e-9)


def test_log_csv_has_a_row_per_step_with_each_loss_term(tiny_run):
    header, rows = read_csv(tiny_run / "log.csv")
    assert header == ["step", "loss", "ce_1", "ce_2", "synergic_12", "lr", "seconds_per_step"]
    assert [int(row[0]) for row in rows] == [1, 2, 3, 4, 5, 6]
    for row in rows:
        values = dict(zip(header, map(float, row)))
        # eq. 5 with lambda = 3 (the recipe's default synergic_weight)
        expected = values["ce_1"] + values["ce_2"] + 3.0 * values["synergic_12"]
        assert math.isclose(values["loss"], expected, rel_tol=1e-4)
        assert values["seconds_per_step"] > 0
    assert float(rows[0][5]) == 0.01  # train.optimizer.lr at step 1


def test_run_by_builtin_name_resolves_overrides_into_the_default_run_directory(
    tmp_path, monkeypatch
):
    root = write_fabricated_isic(tmp_path / "isic")
    monkeypatch.chdir(tmp_path)
    invoke(
        "run", "isic2016_sdl2", "--set", f"data.root={root}",
        "--set", "model.backbone.name=test_efficientnet", "--set", "model.backbone.pretrained=false",
        "--set", "data.image_size=32", "--set", "data.cache=false", "--set", "train.iterations=2",
        "--set", "train.batch_size=2", "--set", "train.device=cpu",
    )
    [run_dir] = (tmp_path / "runs" / "isic2016_sdl2").iterdir()
    assert re.fullmatch(r"\d{8}-\d{6}", run_dir.name)
    saved = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert saved["name"] == "isic2016_sdl2"
    assert saved["data"]["root"] == str(root) and saved["data"]["image_size"] == 32
    assert saved["model"]["backbone"] == {
        "name": "test_efficientnet", "pretrained": False, "weights": None, "weights_key": None,
        "options": {},
    }
    assert saved["train"]["iterations"] == 2 and saved["train"]["batch_size"] == 2
    # Everything not overridden is the paper's setting, written out.
    assert saved["train"]["synergic_weight"] == 3.0 and saved["train"]["optimizer"]["lr"] == 1e-4
    assert saved["model"]["head"]["hidden"] == 1024 and saved["data"]["resize"] == "bicubic"
    assert saved["model"]["aggregator"] == "sum_softmax"
    header, rows = read_csv(run_dir / "predictions.csv")
    assert header == ["image", "benign", "malignant"]
    assert [row[0] for row in rows] == list(FABRICATED_TEST)


def test_run_stops_before_training_on_user_errors(tmp_path, capsys):
    out = tmp_path / "run"
    message = user_error(capsys, "run", "isic2016_sdl2", "--set", f"data.root={tmp_path / 'no'}",
                         "--output", out)
    assert message == (f"ISIC 2016 not found at {tmp_path / 'no'}: run 'synergic data download "
                       "isic2016' or set data.root")
    assert not out.exists()
    message = user_error(capsys, "run", "isic2016_sdl2", "--set", "train.iterashuns=5")
    assert "unknown key 'train.iterashuns' (did you mean 'train.iterations'?)" in message
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    message = user_error(capsys, "run", "demo", "--output", tmp_path / "other")
    assert message.startswith(f"output directory {tmp_path / 'other'} already holds other files")


# -- synergic eval and predict ----------------------------------------------------------------


def test_eval_reproduces_metrics_json_from_last_pt(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    table = read_table(invoke("eval", tiny_run).output)
    expected = {"aggregate": metrics["test"], "component 1": metrics["test_components"][0],
                "component 2": metrics["test_components"][1]}
    assert list(table) == list(expected)
    for row, values in expected.items():
        for name in METRICS:
            shown = "n/a" if values[name] is None else f"{values[name]:.4f}"
            assert table[row][name] == shown, (row, name)
    # The validation split is carved again from the recipe's seed: the same images, the same scores.
    table = read_table(invoke("eval", tiny_run, "--split", "val").output)
    validation = metrics["validation"]
    assert table["aggregate"]["ap"] == f"{validation['ap']:.4f}"


def test_predict_classifies_images_like_the_run_did(tiny_run, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    test_set = tiny_test_set()
    for index in range(4):
        image, _ = test_set[index]
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{test_set.ids[index]}.png")
    output = tmp_path / "predictions.csv"
    invoke("predict", tiny_run, folder, "--output", output)
    header, rows = read_csv(output)
    assert header == ["image", "benign", "malignant", "prediction"]
    assert [Path(row[0]).stem for row in rows] == sorted(test_set.ids[:4])
    _, run_rows = read_csv(tiny_run / "predictions.csv")
    from_run = {row[0]: [float(v) for v in row[1:]] for row in run_rows}
    for row in rows:
        probabilities = [float(v) for v in row[1:3]]
        assert probabilities == pytest.approx(from_run[Path(row[0]).stem], abs=1e-5)
        assert row[3] == ("benign", "malignant")[probabilities[1] > probabilities[0]]

    single = invoke("predict", tiny_run, folder / f"{test_set.ids[0]}.png").stdout
    assert single.splitlines()[0] == "image,benign,malignant,prediction"
    assert single.splitlines()[1] == ",".join(next(r for r in rows if test_set.ids[0] in r[0]))


def test_eval_and_predict_report_missing_runs_and_images(tiny_run, tmp_path, capsys):
    assert user_error(capsys, "eval", tmp_path) == f"{tmp_path} holds no synergic run (no recipe.yaml)"
    message = user_error(capsys, "predict", tiny_run, tmp_path / "absent.png")
    assert message == f"{tmp_path / 'absent.png'} not found"


# -- synergic list, recipe, --version, --help -------------------------------------------------


def test_list_shows_each_kind_with_origins():
    table = read_table(invoke("list", "aggregators").output)
    for name in ("max", "mean_logits", "sum_softmax", "vote"):
        assert table[name]["origin"] == "synergic"
    assert "eq. 6" in table["sum_softmax"]["description"]
    backbones = read_table(invoke("list", "backbones").output)
    assert backbones["<any timm model>"]["origin"] == "timm"
    output = invoke("list").output
    for title in ("aggregators", "backbones", "datasets", "heads", "samplers"):
        assert re.search(rf"^\s*{title}\s*$", output, flags=re.M), title
    for name in ("balanced", "mlp", "isic2016", "synthetic_lesions", "folder", "csv"):
        assert f"│ {name} " in output
    result = CliRunner().invoke(cli, ["list", "optimizers"])
    assert result.exit_code == 2 and "'optimizers' is not one of" in result.output


def test_recipe_show_round_trips(tiny_recipe, tmp_path):
    shown = invoke("recipe", "show", tiny_recipe, "--set", "train.iterations=9").stdout
    data = yaml.safe_load(shown)
    assert data["train"]["iterations"] == 9
    assert "precision" in data["train"] and "resize" in data["data"]  # every default written out
    again = tmp_path / "shown.yaml"
    again.write_text(shown)
    assert invoke("recipe", "show", again).stdout == shown
    assert load_recipe(again) == load_recipe(tiny_recipe, ["train.iterations=9"])

    shown_paper = invoke("recipe", "show", "isic2016_sdl2").stdout
    assert shown_paper.startswith(
        "# model.backbone: resnet50.tv_in1k -> timm resnet50.tv_in1k, weights: hub\n"
    )
    paper = yaml.safe_load(shown_paper)
    assert paper["model"]["backbone"]["name"] == "resnet50.tv_in1k"
    assert paper["model"]["components"] == 2
    assert paper["train"]["iterations"] == 100_000 and paper["train"]["synergic_weight"] == 3.0


def test_recipe_check_validates_only(tiny_recipe, capsys):
    assert invoke("recipe", "check", tiny_recipe).stdout.strip() == f"{tiny_recipe}: ok (tiny)"
    message = user_error(capsys, "recipe", "check", tiny_recipe, "--set", "model.aggregator=sum_softmx")
    assert "model.aggregator: unknown aggregator 'sum_softmx': did you mean 'sum_softmax'?" in message
    tiny_recipe.write_text(tiny_recipe.read_text().replace("iterations: 6", "iterations: [6"))
    message = user_error(capsys, "recipe", "check", tiny_recipe)
    assert re.fullmatch(r".*tiny\.yaml:\d+:\d+: YAML syntax error: .*", message), message


def test_version():
    assert invoke("--version").output == f"synergic, version {synergic.__version__}\n"


def all_commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from all_commands(command, (*path, name))


def test_help_on_every_command():
    paths = list(all_commands(cli))
    expected = {("run",), ("eval",), ("predict",), ("list",), ("plugins",), ("recipe", "show"),
                ("recipe", "check"), ("data", "download")}
    assert expected <= set(paths)
    for path in [(), *paths]:
        result = CliRunner().invoke(cli, [*path, "--help"], env=WIDE)
        assert result.exit_code == 0, (path, result.output)
        assert result.output.startswith(f"Usage: {' '.join(('cli', *path))} "), result.output
        assert "-h, --help" in result.output
    assert "--base-url" in CliRunner().invoke(cli, ["data", "download", "--help"]).output


# -- synergic data download -------------------------------------------------------------------


def load_download_test_helpers():
    """tests/data/test_data_download.py's fake ISIC challenge server (a module, not a package)."""
    path = Path(__file__).parent / "data" / "test_data_download.py"
    spec = importlib.util.spec_from_file_location("_download_test_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def challenge_server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = load_download_test_helpers().FakeChallengeServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
    server.thread.join()


def test_data_download_fetches_isic2016_from_a_local_server(challenge_server, tmp_path, capsys):
    from synergic.data.datasets import isic2016

    root = tmp_path / "isic"
    result = invoke("data", "download", "isic2016", "--root", root,
                    "--base-url", challenge_server.url)
    assert f"isic2016 is ready in {root}" in result.stdout
    assert len(challenge_server.requests) == 4
    assert isic2016.isic2016(root=root, split="test").labels == [0, 1]
    challenge_server.requests.clear()
    invoke("data", "download", "isic2016", "--root", root, "--base-url", challenge_server.url)
    assert challenge_server.requests == []  # idempotent: nothing fetched again

    del challenge_server.files["ISBI2016_ISIC_Part3_Training_GroundTruth.csv"]
    message = user_error(capsys, "data", "download", "isic2016", "--root", tmp_path / "other",
                         "--base-url", challenge_server.url)
    assert message.startswith(f"could not download {challenge_server.url}"
                              "ISBI2016_ISIC_Part3_Training_GroundTruth.csv: HTTP 404")


# -- issue 3's acceptance check on the real ISIC 2016 sample ----------------------------------

FABRICATED_TRAIN = {f"ISIC_00000{i:02d}": ("benign", "malignant")[i % 2] for i in range(8)}
FABRICATED_TEST = {f"ISIC_00001{i:02d}": ("0.0", "1.0")[i % 2] for i in range(4)}


def write_fabricated_isic(root: Path) -> Path:
    """A tiny copy of the official ISIC 2016 Part 3 layout (CRLF, no header, no final newline)."""
    from synergic.data.datasets import isic2016

    for folder, csv_name, rows in (
        (isic2016.TRAIN_IMAGES, "ISBI2016_ISIC_Part3_Training_GroundTruth.csv", FABRICATED_TRAIN),
        (isic2016.TEST_IMAGES, "ISBI2016_ISIC_Part3_Test_GroundTruth.csv", FABRICATED_TEST),
    ):
        (root / folder).mkdir(parents=True)
        for index, (image_id, label) in enumerate(rows.items()):
            shade = 60 + 120 * (label in ("malignant", "1.0")) + index
            Image.new("RGB", (24, 18), (shade, 80, 40)).save(root / folder / f"{image_id}.jpg")
        (root / csv_name).write_bytes("\r\n".join(f"{k},{v}" for k, v in rows.items()).encode())
    return root


def _gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "backbone",
    [
        "test_efficientnet",
        # The paper's ResNet-50 takes minutes on a small CPU; it runs where there is a GPU.
        pytest.param("resnet50", marks=[
            pytest.mark.slow,
            pytest.mark.skipif("not _gpu_available()", reason="ResNet-50 training needs a GPU "
                                                              "to be quick"),
        ]),
    ],
)
def test_issue_3_acceptance_run_agrees_with_the_isic_scorer(backbone, isic_sample, tmp_path):
    out = tmp_path / "run"
    iterations = 20 if backbone == "test_efficientnet" else 2
    invoke(
        "run", REPO / "recipes" / "isic2016_sdl2.yaml", "--output", out,
        "--set", f"data.root={isic_sample}", "--set", "model.backbone.pretrained=false",
        "--set", f"train.iterations={iterations}", "--set", "train.batch_size=4",
        "--set", f"model.backbone.name={backbone}", "--set", "data.image_size=64",
    )
    for name in ("recipe.yaml", "metrics.json", "predictions.csv", "log.csv", "roc.png", "pr.png",
                 "checkpoints/last.pt"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoints" / "best.pt").exists()  # the paper's recipe has no validation
    _, log_rows = read_csv(out / "log.csv")
    assert int(log_rows[-1][0]) == iterations

    ground_truth = isic_sample / "ISBI2016_ISIC_Part3_Test_GroundTruth.csv"
    _, rows = read_csv(out / "predictions.csv")
    truth_ids = [line.split(",")[0] for line in ground_truth.read_text().splitlines() if line]
    assert [row[0] for row in rows] == truth_ids

    reason = scorer_unavailable_reason()
    if reason:
        pytest.skip(reason)
    theirs = score_with_isic(out / "predictions.csv", ground_truth)
    ours = json.loads((out / "metrics.json").read_text())["test"]
    for name, value in theirs.items():
        assert math.isclose(ours[name], value, abs_tol=1e-9), (name, ours[name], value)
