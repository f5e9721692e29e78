"""Reliability: exact resume after SIGKILL, SIGTERM and Ctrl-C, refused resumes, checkpoints that
survive a full disk, non-finite losses and gradient clipping (issue 5; docs/checkpoints.md).

The kill tests run ``python -m synergic`` in subprocesses with one thread each, so that the
interrupted-and-resumed run and the uninterrupted one do the same floating-point work.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

import synergic
from synergic.errors import SynergicError
from synergic.training.checkpoint import load_checkpoint

from tiny_recipe import TINY_RECIPE

# 30 steps, a checkpoint every 3, a validation every 4 (so best.pt is written between
# checkpoints) and a log row every step.
LONG_RECIPE = (
    TINY_RECIPE.replace("name: tiny", "name: long")
    .replace("iterations: 6", "iterations: 30")
    .replace("eval_every: 3", "eval_every: 4")
    .replace("checkpoint_every: 2", "checkpoint_every: 3")
)
ITERATIONS, CHECKPOINT_EVERY = 30, 3
RESULTS = ("metrics.json", "predictions.csv")
SUBPROCESS_ENV = {
    **os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "SYNERGIC_DISABLE_PLUGINS": "1",
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- helpers ----------------------------------------------------------------------------------


def start(*args: str, cwd: Path) -> subprocess.Popen:
    """``python -m synergic ARGS`` in the background; its output goes to a file, not a pipe that
    could fill up while the test polls."""
    output = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "synergic", *args], cwd=cwd, env=SUBPROCESS_ENV,
        stdout=output, stderr=subprocess.STDOUT, text=True,
    )
    process.output = output
    return process


def output_of(process: subprocess.Popen) -> str:
    process.output.seek(0)
    return process.output.read()


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    """The exit status and the output (stdout and stderr together)."""
    process.wait(timeout=timeout)
    return process.returncode, output_of(process)


def logged_steps(run_dir: Path) -> int:
    """Complete rows of log.csv so far (the log is written one step late)."""
    try:
        return max(0, (run_dir / "log.csv").read_text().count("\n") - 1)
    except FileNotFoundError:
        return 0


def wait_for_step(process: subprocess.Popen, run_dir: Path, step: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while logged_steps(run_dir) < step:
        if process.poll() is not None:
            raise AssertionError(f"the run ended before step {step}: {output_of(process)[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"step {step} not reached in {timeout} s")
        time.sleep(0.005)


def log_rows(run_dir: Path) -> list[dict[str, str]]:
    """log.csv without its timing column, which differs between any two runs."""
    rows = list(csv.DictReader((run_dir / "log.csv").open(newline="")))
    return [{k: v for k, v in row.items() if k != "seconds_per_step"} for row in rows]


def assert_same_run(a: Path, b: Path, note: str = "") -> None:
    for name in RESULTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs {note}"
    # Every step logged once, with the same losses.
    assert log_rows(a) == log_rows(b), f"log.csv differs {note}"
    last_a, last_b = (load_checkpoint(d / "checkpoints" / "last.pt") for d in (a, b))
    for key in ("step", "best_step", "best_metric", "validation_history"):
        assert last_a[key] == last_b[key], f"last.pt {key} differs {note}"
    best_a, best_b = (load_checkpoint(d / "checkpoints" / "best.pt") for d in (a, b))
    assert best_a["step"] == best_b["step"]
    for key, value in best_a["model"].items():
        assert torch.equal(value, best_b["model"][key]), f"best.pt {key} differs {note}"


def error_line(stderr: str) -> str:
    """The one error line; fails when there is a traceback or more than one error line."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr[-3000:]
    return errors[0]


def invoke(args: list[str], capsys) -> tuple[int, str, str]:
    """``synergic ARGS`` in this process, as the console script runs it."""
    from synergic.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def long_recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "long.yaml"
    path.write_text(LONG_RECIPE)
    return path


# -- SIGKILL and SIGTERM at random steps, then resumed: byte-identical results -----------------


class Interrupter(threading.Thread):
    """Sends ``signum`` to ``process`` once its log.csv reaches ``step`` (and ``delay`` s more),
    while the test does something else."""

    def __init__(self, process: subprocess.Popen, run_dir: Path, step: int, signum: int, delay: float):
        super().__init__(daemon=True)
        self.process, self.run_dir, self.step, self.signum, self.delay = process, run_dir, step, signum, delay
        self.sent = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            wait_for_step(self.process, self.run_dir, self.step)
            time.sleep(self.delay)
            if self.process.poll() is None:
                self.process.send_signal(self.signum)
                self.sent = True
        except BaseException as error:  # noqa: BLE001 - re-raised by the test
            self.error = error

    def result(self) -> None:
        self.join(timeout=300)
        if self.error is not None:
            raise self.error
        assert self.sent, f"the run finished before step {self.step} + {self.delay:.3f} s"


def test_a_run_killed_then_stopped_at_random_steps_and_resumed_is_the_uninterrupted_run(
    long_recipe, tmp_path, capsys
):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    note = f"(random seed {seed})"
    run_dir = tmp_path / "B"

    # 1. SIGKILL at a random step after the first checkpoint (a kill before it is tested below),
    #    while the uninterrupted run trains here, in this process, with the same single thread.
    process = start("run", str(long_recipe), "--output", str(run_dir), cwd=tmp_path)
    killer = Interrupter(
        process, run_dir, rng.randint(CHECKPOINT_EVERY + 1, ITERATIONS - 8), signal.SIGKILL,
        rng.uniform(0, 0.05),
    )
    killer.start()
    code, _, err = invoke(["run", long_recipe, "--output", tmp_path / "A"], capsys)
    assert code == 0, err
    killer.result()
    process.wait(timeout=60)
    assert not any((run_dir / name).exists() for name in RESULTS)
    killed_at = load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
    assert 0 < killed_at < ITERATIONS and killed_at % CHECKPOINT_EVERY == 0, note

    # 2. Resumed with `run --resume`, then SIGTERM (a pre-empted job) a few steps later: the step
    #    finishes, last.pt is saved, and the run exits non-zero saying how to go on.
    process = start("run", str(long_recipe), "--output", str(run_dir), "--resume", cwd=tmp_path)
    stopper = Interrupter(
        process, run_dir, rng.randint(killed_at + 2, ITERATIONS - 3), signal.SIGTERM,
        rng.uniform(0, 0.05),
    )
    stopper.start()
    stopper.result()
    code, output = finish(process)
    assert f"resuming from step {killed_at} of {ITERATIONS}" in output, output[-2000:]
    assert code == 1, output[-2000:]
    stopped_at = load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
    assert killed_at < stopped_at < ITERATIONS, note
    assert error_line(output) == (
        f"error: stopped by SIGTERM at step {stopped_at}; checkpoint saved: resume to continue "
        f"with: synergic resume {run_dir}"
    )
    assert not any((run_dir / name).exists() for name in RESULTS)

    # 3. Finished with `synergic resume DIR` (here, in this process): the same run, byte for byte.
    code, _, err = invoke(["resume", run_dir], capsys)
    assert code == 0, err[-3000:]
    assert f"resuming from step {stopped_at} of {ITERATIONS}" in err, err[-2000:]
    assert_same_run(tmp_path / "A", run_dir, note)


def test_ctrl_c_during_training_finishes_the_step_and_saves_it(tmp_path):
    from test_trainer import make_trainer
    from synergic.training.trainer import TrainingInterrupted

    class PressCtrlC:
        def on_log(self, trainer, row):
            if row["step"] == 2:
                os.kill(os.getpid(), signal.SIGINT)

    trainer = make_trainer(iterations=6, log_every=1, checkpoint_dir=tmp_path, callbacks=[PressCtrlC()])
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match=r"^stopped by SIGINT at step \d+; checkpoint saved"):
        trainer.fit()
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["step"] == trainer.state.step < 6
    # The handler is gone again: Ctrl-C outside training interrupts as usual.
    assert signal.getsignal(signal.SIGINT) is handler


# -- in-process runs of the tiny recipe ------------------------------------------------------


TINY_RECIPE = (
    LONG_RECIPE.replace("name: long", "name: tiny").replace("iterations: 30", "iterations: 6")
    .replace("eval_every: 4", "eval_every: 3").replace("checkpoint_every: 3", "checkpoint_every: 2")
)


@pytest.fixture(scope="module")
def finished_once(tmp_path_factory) -> Path:
    """A finished 6-step run (checkpoints at 2, 4, 6; validations at 3, 6), trained once per
    module; ``step4.pt`` beside it is its checkpoint of step 4."""
    from synergic.experiment import run
    from synergic.recipe import load_recipe

    folder = tmp_path_factory.mktemp("finished")
    (folder / "tiny.yaml").write_text(TINY_RECIPE)

    class KeepStep4:
        def on_checkpoint(self, trainer, path):
            if trainer.state.step == 4 and path.name == "last.pt":
                shutil.copy(path, folder / "step4.pt")

    run(load_recipe(folder / "tiny.yaml"), folder / "run", callbacks=[KeepStep4()])
    return folder


@pytest.fixture
def finished_run(finished_once, tmp_path) -> Path:
    """A copy of the finished run, this test's own."""
    return Path(shutil.copytree(finished_once / "run", tmp_path / "run"))


@pytest.fixture
def tiny(finished_once, tmp_path) -> Path:
    """The recipe of ``finished_run``."""
    return Path(shutil.copy(finished_once / "tiny.yaml", tmp_path / "tiny.yaml"))


def test_checkpoints_record_the_version_and_the_recipe(finished_run):
    from synergic.recipe import load_recipe
    from synergic.rundir import identity_hash, read_run_record

    state = torch.load(finished_run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert state["synergic_version"] == synergic.__version__
    identity = identity_hash(load_recipe(finished_run / "recipe.yaml"))
    assert state["metadata"]["recipe_hash"] == identity == read_run_record(finished_run)["identity"]
    assert state["metadata"]["data_fingerprint"] == read_run_record(finished_run)["data_fingerprint"]
    assert state["metadata"]["recipe"]["model"]["head"]["hidden"] == 16
    assert set(state) >= {"model", "optimizer", "scaler", "rng", "step", "validation_history"}
    assert set(state["rng"]) >= {"torch", "numpy", "python"}
    assert not list((finished_run / "checkpoints").glob("*.tmp"))


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["seed=1"], "seed (0 -> 1)"),
        (["model.head.hidden=32", "model.synergic_head.options.hidden=8"],
         "model.head.hidden (16 -> 32), model.synergic_head.options.hidden (16 -> 8)"),
        (["data.image_size=48", "train.iterations=8"], "data.image_size (32 -> 48)"),
        # The training section defines the run too: the weights must come from one recipe.
        (["train.optimizer.lr=0.5"], "train.optimizer.lr (0.01 -> 0.5)"),
        (["train.synergic_weight=0.5"], "train.synergic_weight (3.0 -> 0.5)"),
        (["train.sampler=random"], 'train.sampler.name ("balanced" -> "random")'),
        (["train.batch_size=6"], "train.batch_size (4 -> 6)"),
        (["train.lr_schedule.gamma=0.5"], "train.lr_schedule.gamma (0.0001 -> 0.5)"),
        (["train.select=last"], 'train.select ("auto" -> "last")'),
        # Which steps are validated decides which checkpoints best.pt can hold.
        (["train.eval_every=2"], "train.eval_every (3 -> 2)"),
    ],
)
@pytest.mark.parametrize("command", ["run --resume", "resume"])
def test_resume_with_a_result_affecting_change_is_refused_naming_the_keys(
    finished_run, tiny, capsys, overrides, named, command
):
    before = {p.name: p.read_bytes() for p in finished_run.iterdir() if p.is_file()}
    if command == "resume":
        args = ["resume", finished_run]
    else:
        args = ["run", tiny, "--output", finished_run, "--resume"]
    code, _, err = invoke(args + [f"--set={o}" for o in overrides], capsys)
    line = error_line(err)
    assert code == 1
    assert f"cannot resume {finished_run}: the recipe differs from the run's in {named};" in line
    assert "train.iterations" not in line  # extending is allowed
    assert err.count("error:") == 1 and "Traceback" not in err, err
    # Nothing was touched: recipe.yaml still names the recipe that made the weights.
    assert {p.name: p.read_bytes() for p in finished_run.iterdir() if p.is_file()} == before


@pytest.mark.parametrize(
    "override", ["train.device=cpu", "train.log_every=2",
                 "train.checkpoint_every=3", "train.num_workers=0", "train.eval_batch_size=4",
                 "name=renamed", "data.cache=true"],
)
def test_resume_with_a_result_neutral_change_is_allowed(finished_run, capsys, override):
    code, _, err = invoke(["resume", finished_run, "--set", override], capsys)
    assert code == 0, err


def test_extending_a_cosine_schedule_is_refused(tmp_path, tiny, capsys):
    run_dir = tmp_path / "cosine"
    code, _, err = invoke(["run", tiny, "--output", run_dir, "--set=train.lr_schedule=cosine"], capsys)
    assert code == 0, err
    code, _, err = invoke(["resume", run_dir, "--set", "train.iterations=10"], capsys)
    assert code == 1
    assert "cosine learning-rate schedule depends on the total (6)" in error_line(err)


def test_raising_iterations_extends_a_finished_run(finished_run, tiny, tmp_path, capsys):
    code, _, err = invoke(["resume", finished_run, "--set", "train.iterations=10"], capsys)
    assert code == 0, err
    assert "resuming from step 6 of 10" in err
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["iterations"] == 10
    steps = [int(row["step"]) for row in log_rows(finished_run)]
    assert steps == list(range(1, 11))
    assert load_checkpoint(finished_run / "checkpoints" / "last.pt")["step"] == 10

    # The extended run trained exactly as a 10-step run: validation never touches the RNG.
    direct = tmp_path / "direct"
    code, _, err = invoke(["run", tiny, "--output", direct, "--set", "train.iterations=10"], capsys)
    assert code == 0, err
    assert (direct / "predictions.csv").read_bytes() == (finished_run / "predictions.csv").read_bytes()
    assert log_rows(direct) == log_rows(finished_run)
    extended, uninterrupted = (load_checkpoint(d / "checkpoints" / "last.pt") for d in (finished_run, direct))
    for key, value in uninterrupted["model"].items():
        assert torch.equal(value, extended["model"][key]), key
    # run.json records the extension.
    from synergic.rundir import read_run_record

    history = read_run_record(finished_run)["iterations_history"]
    assert [(h["iterations"], h["from_step"]) for h in history] == [(6, 0), (10, 6)]


def test_lowering_iterations_below_the_saved_step_is_refused(finished_run, capsys):
    code, _, err = invoke(["resume", finished_run, "--set", "train.iterations=3"], capsys)
    assert code == 1
    assert "already at step 6, beyond train.iterations=3" in error_line(err)


def test_resuming_a_finished_run_again_gives_the_same_results(finished_run, capsys):
    before = {name: (finished_run / name).read_bytes() for name in RESULTS}
    history = load_checkpoint(finished_run / "checkpoints" / "last.pt")["validation_history"]
    code, _, err = invoke(["resume", finished_run], capsys)
    assert code == 0, err
    assert {name: (finished_run / name).read_bytes() for name in RESULTS} == before
    # The final step is not validated twice.
    assert load_checkpoint(finished_run / "checkpoints" / "last.pt")["validation_history"] == history


def test_a_run_killed_before_its_first_checkpoint_starts_again(finished_run, tiny, tmp_path, capsys):
    # What a SIGKILL at step 1 leaves: the recipe and a log with a half-written row.
    run_dir = tmp_path / "early"
    run_dir.mkdir()
    shutil.copy(finished_run / "recipe.yaml", run_dir / "recipe.yaml")
    log = (finished_run / "log.csv").read_text().splitlines(keepends=True)
    (run_dir / "log.csv").write_text("".join(log[:2]) + log[2][:9])
    code, _, err = invoke(["run", tiny, "--output", run_dir, "--resume"], capsys)
    assert code == 0, err
    assert "no checkpoint yet: training from step 0" in err
    for name in RESULTS:
        assert (run_dir / name).read_bytes() == (finished_run / name).read_bytes(), name
    assert log_rows(run_dir) == log_rows(finished_run)


def test_a_half_written_log_row_is_dropped_on_resume(finished_run, finished_once, capsys):
    # Killed while writing the log row of step 6, after the checkpoint of step 4.
    shutil.copy(finished_once / "step4.pt", finished_run / "checkpoints" / "last.pt")
    rows = (finished_run / "log.csv").read_text().splitlines(keepends=True)
    (finished_run / "log.csv").write_text("".join(rows[:6]) + rows[6][:4])  # header, 1..5, "6,3."
    for name in RESULTS:
        (finished_run / name).unlink()
    code, _, err = invoke(["resume", finished_run], capsys)
    assert code == 0, err
    assert "resuming from step 4 of 6" in err
    assert_same_run(finished_once / "run", finished_run)


# -- checkpoints that cannot be resumed --------------------------------------------------------


def test_a_checkpoint_of_another_model_is_refused(finished_run, tiny, tmp_path, capsys):
    other = tmp_path / "other"
    code, _, err = invoke(
        ["run", tiny, "--output", other, "--set", "model.head.hidden=8",
         "--set", "train.iterations=2"], capsys,
    )
    assert code == 0, err
    shutil.copy(other / "checkpoints" / "last.pt", finished_run / "checkpoints" / "last.pt")
    code, _, err = invoke(["resume", finished_run], capsys)
    assert code == 1
    line = error_line(err)
    assert "was written by a run of another recipe" in line and "model.head.hidden" in line


def test_the_trainer_names_what_differs_in_a_checkpoint_of_another_model(tmp_path):
    from test_trainer import make_trainer

    from synergic import build_model

    make_trainer(iterations=1, checkpoint_dir=tmp_path).fit()

    trainer = make_trainer(iterations=1)
    trainer.model = build_model("test_efficientnet", num_classes=2, components=2, hidden=8)
    with pytest.raises(SynergicError) as caught:
        trainer.resume(tmp_path / "last.pt")
    message = str(caught.value)
    assert message.startswith("the checkpoint holds another model (")
    assert "weights of another shape (e.g. components.0." in message
    assert "in the checkpoint" in message and "\n" not in message


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "a pickle"])
def test_a_damaged_last_checkpoint_is_refused_with_a_clear_error(finished_run, capsys, damage):
    last = finished_run / "checkpoints" / "last.pt"
    data = last.read_bytes()
    if damage == "truncated":
        last.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        last.write_bytes(os.urandom(len(data)))
    elif damage == "empty":
        last.write_bytes(b"")
    else:  # weights_only refuses to run code from a pickle
        import pickle

        last.write_bytes(pickle.dumps(Path("x")))
    before = (finished_run / "metrics.json").read_bytes()
    code, _, err = invoke(["resume", finished_run], capsys)
    assert code == 1
    line = error_line(err)
    assert f"checkpoint {last} cannot be read" in line
    assert "restore it from a copy or start a new --output" in line
    assert (finished_run / "metrics.json").read_bytes() == before


def _with_version(path: Path, version: str) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    state["synergic_version"] = version
    torch.save(state, path)


def test_a_checkpoint_of_another_minor_version_is_refused(finished_run, capsys):
    major, minor = synergic.__version__.split(".")[:2]
    other = f"{major}.{int(minor) + 1}.0"
    last = finished_run / "checkpoints" / "last.pt"
    _with_version(last, other)
    code, _, err = invoke(["resume", finished_run], capsys)
    assert code == 1
    line = error_line(err)
    assert f"was written by synergic {other}, this is synergic {synergic.__version__}" in line
    assert f"install synergic=={other}" in line


def test_a_checkpoint_of_another_patch_version_resumes(finished_run, capsys):
    major, minor = synergic.__version__.split(".")[:2]
    _with_version(finished_run / "checkpoints" / "last.pt", f"{major}.{minor}.999")
    code, _, err = invoke(["resume", finished_run, "--set", "train.iterations=7"], capsys)
    assert code == 0, err
    assert load_checkpoint(finished_run / "checkpoints" / "last.pt")["synergic_version"] == synergic.__version__


# -- a full disk ------------------------------------------------------------------------------


class FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes are written."""

    def __init__(self, handle, room: int) -> None:
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        if len(data) > self.room:
            self.handle.write(bytes(data[: self.room]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def test_a_checkpoint_write_on_a_full_disk_keeps_the_previous_checkpoint(
    tiny_recipe, tmp_path, capsys, monkeypatch
):
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "checkpoints"
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        handle = real_fdopen(fd, mode, *args, **kwargs)
        # Every write after the first checkpoint runs out of space part-way.
        return FullDisk(handle, room=10_000) if (checkpoints / "last.pt").exists() else handle

    monkeypatch.setattr(os, "fdopen", fdopen)
    code, _, err = invoke(["run", tiny_recipe, "--output", run_dir], capsys)
    monkeypatch.undo()

    assert code == 1
    line = error_line(err)
    assert line.startswith(f"error: could not write checkpoint {checkpoints}")
    assert "No space left on device; the previous checkpoint is intact" in line
    assert load_checkpoint(checkpoints / "last.pt")["step"] == 2  # the first one, intact
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.pt"]  # no temporary files
    assert not any((run_dir / name).exists() for name in RESULTS)

    # With space again, the run resumes from that checkpoint and finishes.
    code, _, err = invoke(["resume", run_dir], capsys)
    assert code == 0, err
    assert "resuming from step 2 of 6" in err


def test_save_checkpoint_reports_the_os_error_not_torchs(tmp_path, monkeypatch):
    from synergic.training.checkpoint import save_checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint(path, {"weights": torch.arange(10)})
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode), room=100))
    with pytest.raises(SynergicError, match="No space left on device"):
        save_checkpoint(path, {"weights": torch.zeros(100_000)})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["weights"], torch.arange(10))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


# -- non-finite losses and gradient clipping -------------------------------------------------


class PoisonAfterCheckpoint:
    """Sets a classifier weight to NaN right after the checkpoint of ``step`` is written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_checkpoint(self, trainer, path):
        if trainer.state.step == self.step:
            with torch.no_grad():
                trainer.model.components[0].classifier.weight.fill_(float("nan"))


@pytest.mark.parametrize(("log_every", "detected_at"), [(1, 3), (10, 4)])
def test_a_non_finite_loss_stops_naming_step_and_term_and_keeps_the_good_checkpoint(
    tmp_path, log_every, detected_at
):
    from test_trainer import make_trainer
    from synergic.training.trainer import NonFiniteLossError

    trainer = make_trainer(
        iterations=8, log_every=log_every, checkpoint_every=2, checkpoint_dir=tmp_path,
        callbacks=[PoisonAfterCheckpoint(2)],
    )
    # With log_every=10 the losses are next read at the checkpoint of step 4, which is refused.
    with pytest.raises(NonFiniteLossError, match=rf"^loss term 'loss' is nan at step {detected_at}: "):
        trainer.fit()
    kept = load_checkpoint(tmp_path / "last.pt")
    assert kept["step"] == 2
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_a_diverging_run_stops_with_one_line_and_no_results(tiny_recipe, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, _, err = invoke(
        ["run", tiny_recipe, "--output", run_dir, "--set", "train.optimizer.lr=1e30"], capsys
    )
    assert code == 1
    line = error_line(err)
    assert "is nan at step" in line or "is inf at step" in line
    assert "lower train.optimizer.lr or set train.grad_clip" in line
    assert not any((run_dir / name).exists() for name in RESULTS)


def _gradient_norm(model) -> float:
    norms = [p.grad.norm() for p in model.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms)))


def test_grad_clip_bounds_the_gradient_norm():
    from test_trainer import make_trainer

    free = make_trainer(iterations=1)
    free.train_step(0)
    unclipped = _gradient_norm(free.model)
    clipped = make_trainer(iterations=1, grad_clip=unclipped / 10)
    clipped.train_step(0)
    assert unclipped > 0
    assert _gradient_norm(clipped.model) == pytest.approx(unclipped / 10, rel=1e-4)


def test_grad_clip_is_a_recipe_key(tiny_recipe, capsys, tmp_path):
    code, _, err = invoke(
        ["run", tiny_recipe, "--output", tmp_path / "run", "--set", "train.grad_clip=0"], capsys
    )
    assert code == 1
    assert "train.grad_clip: 0 is not allowed: must be > 0" in error_line(err)
    assert not (tmp_path / "run").exists()
