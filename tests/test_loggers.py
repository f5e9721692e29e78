"""Loggers (recipe key ``loggers``): TensorBoard event files and an MLflow run in a real local
store hold the same values and steps as log.csv and metrics.json; a logger that cannot start is a
one-line error before anything is decoded or written; one that breaks mid-run warns once and
costs nothing; a resumed run continues logging; the key is result-neutral."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import sys
import warnings

import pytest

from tiny_recipe import write_recipe

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def fresh_plugins(monkeypatch):
    """Plugins reloaded before and after the test (a throwaway plugin registers a logger)."""
    from synergic.plugins import reset_plugins

    monkeypatch.delenv("SYNERGIC_PLUGINS", raising=False)
    reset_plugins()
    yield
    reset_plugins()


def invoke(args) -> tuple[int, str]:
    """``synergic ARGS`` in this process: exit code, and stdout and stderr together."""
    from synergic.cli import main

    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code
    return code, output.getvalue()


def log_rows(run_dir) -> list[dict[str, float]]:
    with (run_dir / "log.csv").open(newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of ``RUN_DIR/tensorboard`` as TensorBoard reads it (purges included)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def expected_test_metrics(run_dir) -> dict[str, float]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected = {f"test/{k}": v for k, v in metrics["test"].items() if v is not None}
    for k, component in enumerate(metrics["test_components"]):
        expected.update({f"test/component_{k + 1}/{m}": v for m, v in component.items()
                         if v is not None})
    for m, (low, high) in metrics["test_ci"].items():
        expected[f"test/{m}_ci_low"], expected[f"test/{m}_ci_high"] = low, high
    for k, component in enumerate(metrics["test_components_ci"]):
        for m, (low, high) in component.items():
            prefix = f"test/component_{k + 1}/{m}"
            expected[f"{prefix}_ci_low"], expected[f"{prefix}_ci_high"] = low, high
    return expected


def close(a: float, b: float) -> bool:  # TensorBoard keeps float32
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)


def test_set_loggers_tensorboard_writes_every_logged_step_and_the_test_metrics(tmp_path):
    recipe = write_recipe(tmp_path / "tiny.yaml")
    code, output = invoke(["run", recipe, "--output", tmp_path / "run",
                           "--set", "loggers=[tensorboard]"])
    assert code == 0, output
    run_dir = tmp_path / "run"
    found = scalars(run_dir)
    rows = log_rows(run_dir)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    for column in rows[0]:
        if column == "step":
            continue
        logged = found[f"train/{column}"]
        assert [step for step, _ in logged] == [int(r["step"]) for r in rows], column
        assert all(close(v, r[column]) for (_, v), r in zip(logged, rows)), column
    assert {"train/ce_1", "train/ce_2", "train/synergic_12", "train/lr"} <= set(found)
    # Validation at every eval_every (3) and the test metrics at the last step.
    assert [step for step, _ in found["val/ap"]] == [3, 6]
    assert [step for step, _ in found["val/component_2/auc"]] == [3, 6]
    expected = expected_test_metrics(run_dir)
    assert {tag for tag in found if tag.startswith("test/")} == set(expected)
    for tag, value in expected.items():
        assert found[tag] == [(6, pytest.approx(value, rel=1e-6, abs=1e-7))], tag
    assert (run_dir / "recipe.yaml").read_text().count("name: tensorboard") == 1


def test_mlflow_and_tensorboard_continue_a_resumed_run(tmp_path, monkeypatch):
    """A run stopped after its checkpoint at step 4 (step 5 already logged) and resumed: one
    MLflow run (recorded in run.json) with the parameters, every step's losses, the test metrics
    and the run directory as artifacts, in a real sqlite store; TensorBoard purges the stopped
    run's step 5, so each step has one value, log.csv's."""
    from mlflow import MlflowClient

    from synergic.experiment import run
    from synergic.loggers import flat_params
    from synergic.recipe import load_recipe

    monkeypatch.chdir(tmp_path)  # MLflow's files, wherever they go, stay in tmp_path
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow_logger = {"name": "mlflow", "options": {
        "tracking_uri": store, "artifact_location": str(tmp_path / "artifacts")}}
    recipe = load_recipe(write_recipe(tmp_path / "tiny.yaml",
                                      loggers=["tensorboard", mlflow_logger]))

    class StopAtStepSix:
        def on_log(self, trainer, row):
            if row["step"] == 6:
                raise RuntimeError("stopped by the test")

    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="stopped by the test"):
        run(recipe, run_dir, callbacks=[StopAtStepSix()])
    record = json.loads((run_dir / "run.json").read_text())["mlflow"]
    client = MlflowClient(store)
    assert client.get_run(record["run_id"]).info.status == "FAILED"
    assert [s for s, _ in scalars(run_dir)["train/loss"]] == [1, 2, 3, 4, 5]

    # Resumed with the loggers reordered: a result-neutral change.
    resumed = load_recipe(write_recipe(tmp_path / "tiny.yaml",
                                       loggers=[mlflow_logger, "tensorboard"]))
    result = run(resumed, run_dir, resume=True)
    assert json.loads((run_dir / "run.json").read_text())["mlflow"] == record

    rows = log_rows(run_dir)
    found = scalars(run_dir)
    assert [step for step, _ in found["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert all(close(v, r["loss"]) for (_, v), r in zip(found["train/loss"], rows))

    mlflow_run = client.get_run(record["run_id"])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.info.run_name == "run"
    assert client.get_experiment(mlflow_run.info.experiment_id).name == "tiny"
    params = mlflow_run.data.params
    expected_params = flat_params(recipe)
    assert set(params) == set(expected_params)
    assert params["train.optimizer.lr"] == "0.01" and params["data.dataset"] == "synthetic_lesions"
    history = {m.step: m.value for m in client.get_metric_history(record["run_id"], "train/ce_1")}
    assert history == {int(r["step"]): r["ce_1"] for r in rows}  # float64: exact
    for name, value in expected_test_metrics(run_dir).items():
        assert mlflow_run.data.metrics[name] == pytest.approx(value, rel=1e-12), name
    assert mlflow_run.data.metrics["test/ap"] == result.metrics["test"]["ap"]
    artifacts = {a.path for a in client.list_artifacts(record["run_id"])}
    assert {"metrics.json", "log.csv", "recipe.yaml", "predictions.csv", "run.json",
            "tensorboard"} <= artifacts
    assert "checkpoints" not in artifacts
    stored = (tmp_path / "artifacts").rglob("metrics.json")
    assert [json.loads(p.read_text()) for p in stored] == [result.metrics]


def test_an_mlflow_run_is_finalized_when_the_run_stops_after_training(tmp_path, monkeypatch):
    """Training finished, then the writing of the results fails, or Ctrl-C stops the test
    evaluation: the MLflow run (a real sqlite store) is FAILED or KILLED, not left RUNNING."""
    from mlflow import MlflowClient

    import synergic.experiment
    from synergic.experiment import run
    from synergic.recipe import load_recipe

    monkeypatch.chdir(tmp_path)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    recipe = load_recipe(write_recipe(
        tmp_path / "tiny.yaml", loggers=[{"name": "mlflow", "options": {
            "tracking_uri": store, "artifact_location": str(tmp_path / "artifacts")}}],
        **{"train.iterations": 2, "train.n_bootstrap": 0},
    ))
    client = MlflowClient(store)
    for where, error, status in [("write_results", OSError("disk full"), "FAILED"),
                                 ("evaluate_selected", KeyboardInterrupt(), "KILLED")]:
        def stop(*args, error=error, **kwargs):
            raise error

        with monkeypatch.context() as patch:
            patch.setattr(synergic.experiment, where, stop)
            with pytest.raises(type(error)):
                run(recipe, tmp_path / where)
        record = json.loads((tmp_path / where / "run.json").read_text())["mlflow"]
        mlflow_run = client.get_run(record["run_id"])
        assert mlflow_run.info.status == status, where
        assert mlflow_run.info.end_time is not None
        assert "train/loss" in mlflow_run.data.metrics  # it did train
        assert not (tmp_path / where / "metrics.json").exists()


def test_finalized_gives_each_ending_its_status():
    from synergic.loggers import LoggerCollection
    from synergic.training.trainer import TrainingInterrupted

    class Recording:
        def __init__(self):
            self.statuses = []

        def finalize(self, status):
            self.statuses.append(status)

    logger = Recording()
    loggers = LoggerCollection([logger])
    interruptions = (TrainingInterrupted, KeyboardInterrupt)
    with loggers.finalized(interruptions):
        pass
    for error in (ValueError("bad"), TrainingInterrupted("stopped by SIGTERM"),
                  KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with loggers.finalized(interruptions):
                raise error
    with pytest.raises(TrainingInterrupted):  # not an interruption unless named as one
        with loggers.finalized():
            raise TrainingInterrupted("stopped")
    assert logger.statuses == ["success", "failed", "interrupted", "interrupted", "failed"]


def _no_decoding(*args, **kwargs):
    raise AssertionError("images were decoded although a logger could not start")


@pytest.mark.parametrize("case", ["unreachable server", "missing package"])
def test_a_logger_that_cannot_start_is_one_line_before_anything_is_decoded(
    tmp_path, monkeypatch, case
):
    import synergic.experiment

    monkeypatch.setattr(synergic.experiment, "prepare_data", _no_decoding)
    if case == "missing package":
        monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
        loggers = "loggers=[tensorboard]"
        expected = ('error: loggers: the \'tensorboard\' logger needs the tensorboard package, '
                    'which cannot be imported (import of torch.utils.tensorboard halted; None in '
                    'sys.modules): pip install "synergic[tensorboard]"')
    else:
        loggers = "loggers=[{name: mlflow, options: {tracking_uri: 'http://127.0.0.1:9'}}]"
        expected = ("error: loggers: the mlflow logger cannot reach the tracking server "
                    "http://127.0.0.1:9 (from loggers[].options.tracking_uri): "
                    "ConnectionRefusedError: ")
    recipe = write_recipe(tmp_path / "tiny.yaml")
    code, output = invoke(["run", recipe, "--output", tmp_path / "run", "--set", loggers])
    assert code == 1, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(expected), output
    assert output.strip().splitlines()[-1] == errors[0]  # the last line, alone
    assert not (tmp_path / "run").exists()


def test_a_logger_that_breaks_mid_run_warns_once_and_the_run_finishes(tmp_path, fresh_plugins):
    """A plugin's logger (through the register_loggers hook) that raises at its second metrics
    call is switched off with one warning; the run's results are complete."""
    from synergic import registry
    from synergic.experiment import run
    from synergic.loggers import LoggerWarning
    from synergic.plugins import hookimpl, register_plugin, unregister_plugin
    from synergic.recipe import load_recipe

    calls: list[tuple[str, int | None]] = []

    class FlakyLogger:
        """Breaks at its second metrics call."""

        def __init__(self, *, run_dir, experiment, resume, start_step, fail_at=2):
            self.fail_at = fail_at

        def log_hyperparams(self, params):
            calls.append(("log_hyperparams", None))

        def log_metrics(self, metrics, step):
            calls.append(("log_metrics", step))
            if len(calls) - 1 == self.fail_at:
                raise ConnectionError("the server went away\nsecond line")

        def log_artifacts(self, run_dir):
            calls.append(("log_artifacts", None))

        def finalize(self, status):
            calls.append(("finalize", None))

    class Plugin:
        @hookimpl
        def register_loggers(self, register):
            register("flaky", FlakyLogger)

    register_plugin(Plugin(), "flaky-plugin")
    try:
        assert registry.loggers.entry("flaky").origin == "flaky-plugin"
        recipe = load_recipe(write_recipe(
            tmp_path / "tiny.yaml", loggers=[{"name": "flaky", "options": {"fail_at": 2}}]))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = run(recipe, tmp_path / "run")
    finally:
        unregister_plugin("flaky-plugin")
    logger_warnings = [w for w in caught if issubclass(w.category, LoggerWarning)]
    assert [str(w.message) for w in logger_warnings] == [
        "logger 'flaky' failed in log_metrics (ConnectionError: the server went away) and is "
        "off for the rest of this run; the run goes on and log.csv and metrics.json are complete"
    ]
    assert calls == [("log_hyperparams", None), ("log_metrics", 1), ("log_metrics", 2)]
    assert (tmp_path / "run" / "metrics.json").is_file() and result.metrics["test"]
    assert len(log_rows(tmp_path / "run")) == 6


def test_logger_names_and_options_are_checked_in_one_line(tmp_path):
    from synergic.errors import SynergicError, UnknownNameError
    from synergic.loggers import open_loggers
    from synergic.recipe import check_registry_names, load_recipe

    recipe = load_recipe(write_recipe(tmp_path / "tiny.yaml"), ["loggers=[csv, tensorbord]"])
    with pytest.raises(UnknownNameError) as caught:
        check_registry_names(recipe)
    assert str(caught.value) == (
        "recipe: loggers[1].name: unknown logger 'tensorbord': did you mean 'tensorboard'? "
        "valid names: csv, mlflow, tensorboard"
    )
    recipe = load_recipe(write_recipe(tmp_path / "tiny.yaml"),
                         ["loggers=[csv, {name: tensorboard, options: {flush_sec: 5}}]"])
    with pytest.raises(SynergicError) as caught:
        open_loggers(recipe.loggers, run_dir=None, experiment="tiny")
    assert str(caught.value) == (
        "loggers[1].options.flush_sec: logger 'tensorboard' has no option 'flush_sec' (did you "
        "mean 'flush_secs'?); its options: flush_secs"
    )
    # csv is the trainer's log.csv: always on, never built twice
    assert len(open_loggers(load_recipe(write_recipe(tmp_path / "tiny.yaml"),
                                        ["loggers=[csv]"]).loggers,
                            run_dir=None, experiment="tiny")) == 0


def test_loggers_are_result_neutral(tmp_path):
    """Another logger list is the same run: same identity, resume allowed, and a recipe without
    loggers is written as before."""
    from synergic.recipe import load_recipe, recipe_to_yaml
    from synergic.rundir import (
        RESULT_NEUTRAL_KEYS, check_resume, identity_differences, identity_hash,
    )

    plain = load_recipe(write_recipe(tmp_path / "tiny.yaml"))
    logged = load_recipe(write_recipe(tmp_path / "tiny.yaml"), [
        "loggers=[tensorboard, {name: mlflow, options: {tracking_uri: 'sqlite:///x.db'}}]"])
    assert "loggers" in RESULT_NEUTRAL_KEYS
    assert identity_hash(plain) == identity_hash(logged)
    assert identity_differences(plain, logged) == []
    check_resume(plain, logged, run_dir=tmp_path, step=2)  # does not raise
    assert "loggers" not in recipe_to_yaml(plain)
    assert "loggers:" in recipe_to_yaml(logged)
    assert load_recipe(write_recipe(tmp_path / "again.yaml")).model_dump() == plain.model_dump()


def test_result_metrics_take_aggregate_components_and_intervals():
    from synergic.loggers import result_metrics

    metrics = {
        "test": {"ap": 0.5, "auc": None}, "test_components": [{"ap": 0.4}, {"ap": 0.6}],
        "test_ci": {"ap": [0.3, 0.7]}, "test_components_ci": [{"ap": [0.2, 0.5]}, {"ap": None}],
    }
    assert result_metrics(metrics) == {
        "test/ap": 0.5, "test/ap_ci_low": 0.3, "test/ap_ci_high": 0.7,
        "test/component_1/ap": 0.4, "test/component_1/ap_ci_low": 0.2,
        "test/component_1/ap_ci_high": 0.5, "test/component_2/ap": 0.6,
    }


def test_the_builtin_loggers_are_listed_with_their_docstrings():
    from synergic import registry

    entries = {e.name: e for e in registry.loggers.entries()}
    assert set(entries) == {"csv", "tensorboard", "mlflow"}
    for name, entry in entries.items():
        assert entry.origin == "synergic" and entry.reference is not None
        first_line = entry.factory.__doc__.strip().splitlines()[0]
        assert entry.description == first_line, name


class _Records(logging.Handler):
    """Every record that reaches the Python loggers MLflow, SQLAlchemy and Alembic log through."""

    names = ("mlflow", "mlflow.store.db.utils", "sqlalchemy", "alembic")

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def __enter__(self):
        for name in self.names:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc):
        for name in self.names:
            logging.getLogger(name).removeHandler(self)


def test_a_tracking_store_lost_mid_run_is_one_warning_line_and_mlflow_says_nothing(tmp_path):
    """The MLflow sqlite store deleted during a run: one LoggerWarning with the database's own
    first line (no SQL statement); none of MLflow's log lines (its INFO "Creating initial MLflow
    database tables...", its ERROR traceback); MLflow's loggers as they were afterwards."""
    pytest.importorskip("mlflow")  # configures its loggers on import, as in a run
    pytest.importorskip("sqlalchemy")
    from types import SimpleNamespace

    from synergic.loggers import LoggerWarning, open_loggers

    before = {name: (logging.getLogger(name).level, logging.getLogger(name).disabled)
              for name in _Records.names}
    store = tmp_path / "mlflow.db"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    spec = SimpleNamespace(name="mlflow", options={"tracking_uri": f"sqlite:///{store}"})
    with _Records() as seen, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loggers = open_loggers([spec], run_dir=run_dir, experiment="tiny")
        loggers.log_hyperparams({"seed": 0})
        loggers.log_metrics({"train/loss": 1.0}, 1)
        store.unlink()
        loggers.log_metrics({"train/loss": 0.5}, 2)
        loggers.finalize("success")
    assert [r.getMessage() for r in seen.records] == []
    messages = [str(w.message) for w in caught if issubclass(w.category, LoggerWarning)]
    assert len(messages) == 1, messages
    assert messages[0].startswith(
        f"logger 'mlflow' failed in log_metrics (TrackingStoreError: sqlite:///{store}: sqlite3."
    ), messages
    assert "\n" not in messages[0] and "SQL" not in messages[0] and "INSERT" not in messages[0]
    assert {name: (logging.getLogger(name).level, logging.getLogger(name).disabled)
            for name in _Records.names} == before


def test_an_unsupported_tracking_uri_scheme_is_named_with_the_supported_ones(tmp_path):
    pytest.importorskip("mlflow")
    from synergic.errors import SynergicError
    from synergic.loggers.mlflow import MLflowLogger

    with pytest.raises(SynergicError) as caught:
        MLflowLogger(run_dir=None, experiment="tiny", tracking_uri="bogus://x")
    message = str(caught.value)
    assert message.startswith(
        "loggers: unsupported MLflow tracking URI scheme 'bogus' in bogus://x (from "
        "loggers[].options.tracking_uri; supported: "
    ), message
    supported = message.split("supported: ")[1].split(")")[0].split(", ")
    assert {"file", "sqlite", "http", "https", "databricks"} <= set(supported), message
    assert "registry" not in message and "\n" not in message
    assert message.endswith("): correct the URI or remove mlflow from loggers")


def test_list_valued_keys_take_one_name_or_a_comma_list(tmp_path):
    """``--set loggers=tensorboard`` (and data.task_classes, the other list of names) is a
    one-element list, not "must be a valid list"."""
    from synergic.recipe import load_recipe

    recipe = write_recipe(tmp_path / "tiny.yaml")
    for value, names in [("tensorboard", ["tensorboard"]),
                         ("tensorboard,mlflow", ["tensorboard", "mlflow"]),
                         ("[tensorboard, mlflow]", ["tensorboard", "mlflow"])]:
        loaded = load_recipe(recipe, [f"loggers={value}"])
        assert [logger.name for logger in loaded.loggers] == names, value
        loaded = load_recipe(recipe, [f"data.task_classes={value}"])
        assert loaded.data.task_classes == names, value


@pytest.mark.parametrize("store", ["default", "sqlite", "file"])
def test_recipe_check_with_mlflow_creates_no_tracking_store(tmp_path, monkeypatch, store):
    """A check verifies the package, the URI's scheme and a server's reachability, and opens no
    store: MLflow would create its default sqlite:///mlflow.db in the working directory."""
    pytest.importorskip("mlflow")
    recipe = write_recipe(tmp_path / "tiny.yaml")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = {"default": None, "sqlite": f"sqlite:///{work / 'store' / 'mlflow.db'}",
           "file": f"file://{work / 'mlruns'}"}[store]
    logger = "mlflow" if uri is None else f"{{name: mlflow, options: {{tracking_uri: '{uri}'}}}}"
    code, output = invoke(["recipe", "check", recipe, "--set", f"loggers=[{logger}]"])
    assert code == 0, output
    assert sorted(p.name for p in work.rglob("*")) == []
    code, output = invoke(["recipe", "check", recipe, "--set",
                           "loggers=[{name: mlflow, options: {tracking_uri: 'bogus://x'}}]"])
    assert code == 1 and "unsupported MLflow tracking URI scheme 'bogus'" in output, output
