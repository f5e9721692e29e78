"""The one progress display of every command that trains (``run``, ``resume``, ``sweep``).

A trainer callback (``on_log``, ``on_validation``). In a terminal it is a rich progress bar on
stderr; when stderr is a file or a pipe it prints plain lines instead, one each time training
passes another tenth of its steps or :data:`PLAIN_INTERVAL_S` seconds after the last line,
plus one per validation, so a log file shows the run's course without a line per step.
"""

from __future__ import annotations

import time

from synergic.cli.output import console

#: The longest wait between two plain progress lines, in seconds of wall time.
PLAIN_INTERVAL_S = 30.0
#: Plain progress lines are printed as training passes each of these fractions of its steps.
PLAIN_FRACTION = 0.1


def _losses(row: dict) -> str:
    return " ".join(
        f"{k}={v:.3f}" for k, v in row.items() if k == "loss" or k.startswith(("ce_", "synergic_"))
    )


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


class TrainingProgress:
    """Progress of one training run, fed by the trainer's callbacks.

    Args:
        description: What is training, e.g. ``"training"`` or a sweep cell's label.
        total: The run's last step (``train.iterations``).
        images_per_step: Images one step reads (batch size x components), for images/s; 0 to
            leave the speed out.
        transient: Remove the bar when it stops (a sweep shows one run at a time).
        enabled: False prints nothing (``--quiet``).
        clock: Wall-clock seconds (tests pass a fake one).
    """

    def __init__(self, description: str, total: int, *, images_per_step: int = 0,
                 transient: bool = False, enabled: bool = True, clock=time.monotonic) -> None:
        self.description = description
        self.total = max(1, int(total))
        self.images_per_step = images_per_step
        self.enabled = enabled
        self.clock = clock
        self.console = console(stderr=True)
        self.interactive = enabled and self.console.is_terminal
        self.last_validation = ""
        self.started = False
        self.progress = None
        self._start_time = None
        self._last_line_time = None
        self._next_fraction = PLAIN_FRACTION
        if self.interactive:
            from rich.progress import (
                BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                TextColumn("{task.fields[losses]}"), console=self.console, transient=transient,
            )
            self.task = self.progress.add_task(description, total=self.total, losses="")

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        self._start_time = self._last_line_time = self.clock()
        if self.progress is not None:
            self.progress.start()

    def stop(self) -> None:
        if self.started and self.progress is not None:
            self.progress.stop()
        self.started = False

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def on_log(self, trainer, row: dict) -> None:
        if not self.enabled:
            return
        step = int(row["step"])
        seconds = row.get("seconds_per_step") or 0
        speed = ""
        if self.images_per_step and seconds > 0:
            speed = f" {self.images_per_step / seconds:.0f} img/s"
        text = f"{_losses(row)} lr={row['lr']:.2e}{speed}"
        if self.progress is not None:
            self.progress.update(self.task, completed=step, losses=text + self.last_validation)
            return
        self._plain_line(step, text, eta=(self.total - step) * seconds)

    def _plain_line(self, step: int, text: str, eta: float) -> None:
        now = self.clock()
        if self._start_time is None:
            self._start_time = self._last_line_time = now
        fraction = step / self.total
        due = (fraction + 1e-9 >= self._next_fraction or step >= self.total
               or now - self._last_line_time >= PLAIN_INTERVAL_S)
        if not due:
            return
        while self._next_fraction <= fraction + 1e-9:
            self._next_fraction += PLAIN_FRACTION
        self._last_line_time = now
        elapsed = now - self._start_time
        line = (f"{self.description} step {step}/{self.total} ({100 * fraction:.0f} %) {text}, "
                f"{_duration(elapsed)} elapsed, eta {_duration(eta)}")
        self.console.print(line, markup=False, highlight=False)

    def on_validation(self, trainer, evaluation) -> None:
        if not self.enabled:
            return
        m = evaluation.metrics
        self.last_validation = (
            f" | val ap={m.get('ap', float('nan')):.3f} auc={m.get('auc', float('nan')):.3f}"
        )
        self.console.print(
            f"step {trainer.state.step}: validation "
            + " ".join(f"{k}={v:.4f}" for k, v in m.items() if isinstance(v, (int, float))),
            markup=False, highlight=False,
        )


class ManyRunsProgress:
    """What ``synergic sweep`` and ``synergic cv`` show while they run many runs: a line per run
    (kept, submitted, running, resuming, done with its time) and one :class:`TrainingProgress`
    for the run in progress. Hand :meth:`on_event`, :meth:`on_stage` and :meth:`callbacks` to
    :func:`synergic.sweep.run_sweep` or :func:`synergic.cv.run_cv`; :meth:`close` stops a
    display left open by an error.

    Args:
        label: the name of a run in its progress bar, e.g. ``lambda run: run.label``.
        enabled: False prints nothing (``--quiet``, ``--json``).
    """

    def __init__(self, label, *, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self.err = console(stderr=True)
        self.progress: TrainingProgress | None = None
        self.started = 0.0

    def say(self, text: str) -> None:
        if self.enabled:
            self.err.print(text, soft_wrap=True)

    def on_event(self, action: str, run, index: int, total: int) -> None:
        where = f"[{index}/{total}] {run.label}"
        if action == "skip":
            self.say(f"{where}: finished earlier, kept")
        elif action == "submit":
            self.say(f"{where}: submitted -> {run.run_dir}")
        elif action in ("start", "resume"):
            verb = "resuming" if action == "resume" else "running"
            self.say(f"{where}: {verb} -> {run.run_dir}")
            self.progress = TrainingProgress(
                f"  {self.label(run)}", run.recipe.train.iterations, transient=True,
                enabled=self.enabled,
            )
            self.started = time.perf_counter()
        elif action == "done":
            if self.progress is None:  # a job of the launcher
                self.say(f"{where}: done")
                return
            self.close()
            self.say(f"{where}: done ({time.perf_counter() - self.started:.0f} s)")

    def on_stage(self, message: str) -> None:
        if message.startswith(("resuming", "no checkpoint")):
            self.say(f"  [dim]{message}[/]")
        if self.progress is None:
            return
        if message == "training":
            self.progress.start()
        elif message.startswith("evaluating"):
            self.progress.stop()

    def callbacks(self, run) -> list:
        return [self.progress]

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
