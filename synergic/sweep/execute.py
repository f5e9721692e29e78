"""Running planned runs resumably: one after another in this process, or as submitit jobs.

Any run with ``run_dir``, ``recipe`` and ``label`` can be executed: a sweep's
:class:`~synergic.sweep.plan.SweepRun`, a cross-validation's :class:`synergic.cv.FoldRun`. A
finished run (its ``metrics.json`` exists) is kept after checking that its recipe is this run's,
an interrupted one (a checkpoint but no ``metrics.json``) is resumed, an empty one started.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from synergic.errors import SynergicError
from synergic.folders import run_state  # one place says what a folder holds
from synergic.recipe import Recipe, load_recipe

__all__ = [
    "SweepCellError", "check_finished", "execute_runs", "interrupted", "launch_runs", "run_state",
]


class SweepCellError(SynergicError):
    """A run of a sweep or cross-validation failed; ``run`` (a :class:`SweepRun`, a
    :class:`synergic.cv.FoldRun`) says which."""

    def __init__(self, message: str, run: Any, exit_code: int = 1) -> None:
        super().__init__(message)
        self.run = run
        self.exit_code = exit_code


def interrupted(command: str, where: str | None, why: str, run: Any = None) -> SweepCellError:
    """The one line of a ``command`` (``cv``, ``sweep``) stopped in ``where`` (``repeat 0 fold
    1``; None: between runs) because of ``why``: how to continue, with the exit status of a
    Ctrl-C (130)."""
    from synergic.errors import INTERRUPTED_EXIT_CODE

    place = f" in {where}" if where else ""
    return SweepCellError(
        f"{command} stopped{place} ({why}): run the same {command} command again to "
        "continue", run, INTERRUPTED_EXIT_CODE,
    )


def _same_experiment(saved: Recipe, wanted: Recipe) -> list[str]:
    # The same rule as resume: a finished cell is kept exactly when it could have been resumed.
    from synergic.rundir import absolute_paths, identity_differences

    return identity_differences(saved, absolute_paths(wanted))


def execute_runs(
    runs: Sequence[Any],
    *,
    command: str = "sweep",
    where: Callable[[Any], str] = lambda run: f"cell {run.label}",
    on_event: Callable[[str, Any, int, int], None] | None = None,
    callbacks: Callable[[Any], Sequence[object]] | None = None,
    on_stage: Callable[[str], None] | None = None,
    progress: bool = False,
    executor: Any = None,
) -> None:
    """Run ``runs`` (each with ``run_dir``, ``recipe`` and ``label``: a :class:`SweepRun`, a
    :class:`synergic.cv.FoldRun`) one after another in this process, resumably: a finished run is
    kept (after checking that its recipe is this run's), an interrupted one resumed, an empty one
    started. ``command`` and ``where(run)`` name a run in errors (``sweep cell a=1 seed 0``).

    With ``executor`` (a submitit executor: ``submitit.AutoExecutor(folder, cluster="slurm")``,
    ``submitit.LocalExecutor(folder)``), each run that has not finished is one job instead, all
    submitted at once (see :func:`launch_runs`); ``callbacks``, ``on_stage`` and ``progress``
    then do not apply.

    Raises:
        SweepCellError: the first run that fails or is stopped (SIGTERM, Ctrl-C: in training
            or outside it), naming it; finished runs stay, so the same call continues. Its
            ``exit_code`` is 130 for a Ctrl-C.
    """
    from synergic.experiment import run as run_experiment

    if executor is not None:
        launch_runs(runs, executor, command=command, where=where, on_event=on_event)
        return
    notify = on_event or (lambda action, run, index, total: None)
    for index, sweep_run in enumerate(runs, start=1):
        state = run_state(sweep_run.run_dir)
        if state == "finished":
            check_finished(sweep_run, f"{command} {where(sweep_run)}")
            notify("skip", sweep_run, index, len(runs))
            continue
        if state == "other":
            raise SweepCellError(
                f"{command} {where(sweep_run)}: {sweep_run.run_dir} holds files that are not a "
                "synergic run: move them away or choose another --output", sweep_run
            )
        action = "resume" if state == "interrupted" else "start"
        notify(action, sweep_run, index, len(runs))
        try:
            run_experiment(
                sweep_run.recipe, sweep_run.run_dir, resume=action == "resume",
                # a run that stopped before its first checkpoint has nothing worth keeping
                overwrite=state == "started", progress=progress,
                callbacks=callbacks(sweep_run) if callbacks else (), on_stage=on_stage,
            )
        except SynergicError as error:
            from synergic.training.trainer import TrainingInterrupted

            if isinstance(error, TrainingInterrupted):
                stopped = interrupted(command, where(sweep_run), str(error), sweep_run)
                stopped.exit_code = error.exit_code  # 130 for Ctrl-C, 1 for SIGTERM
                raise stopped from None
            raise SweepCellError(
                f"{command} {where(sweep_run)} failed: {error}", sweep_run
            ) from error
        except KeyboardInterrupt:  # Ctrl-C outside the training loop: decoding, evaluation
            raise interrupted(command, where(sweep_run), "interrupted by Ctrl-C outside "
                              "training; the run resumes from its last checkpoint",
                              sweep_run) from None
        except Exception as error:
            if hasattr(error, "add_note"):  # Python >= 3.11: the traceback names the run
                error.add_note(f"(in {command} {where(sweep_run)}, {sweep_run.run_dir})")
            raise
        notify("done", sweep_run, index, len(runs))


def launch_runs(
    runs: Sequence[Any],
    executor: Any,
    *,
    command: str = "sweep",
    where: Callable[[Any], str] = lambda run: f"cell {run.label}",
    on_event: Callable[[str, Any, int, int], None] | None = None,
) -> None:
    """Submit each run of ``runs`` that has not finished as one job of ``executor`` (a submitit
    executor), wait for them all, and raise the first failure. A job runs
    :func:`execute_runs` on its one run, so it resumes from the run's ``last.pt`` whenever it
    starts again: run the same command after a job was cancelled or timed out, or let submitit
    requeue a preempted job (the job is :class:`submitit.helpers.Checkpointable`).

    ``on_event`` is told ``"skip"`` for a finished run, ``"submit"`` for each job (its id in
    ``run.job_id`` is not set: see the executor's folder) and ``"done"`` as each ends.

    Raises:
        SweepCellError: one line naming the first run whose job failed (or was stopped), with
            its error and the job's log file.
    """
    notify = on_event or (lambda action, run, index, total: None)
    pending = []
    for index, run in enumerate(runs, start=1):
        if run_state(run.run_dir) == "finished":
            check_finished(run, f"{command} {where(run)}")
            notify("skip", run, index, len(runs))
        else:
            pending.append((index, run))
    if not pending:
        return
    job = _RunJob(command, where)
    try:
        with executor.batch():
            jobs = [executor.submit(job, run) for _, run in pending]
    except (ValueError, TypeError) as error:  # e.g. a parameter the cluster does not know
        raise SweepCellError(f"{command}: the jobs could not be submitted ({error})",
                             pending[0][1]) from None
    for (index, run), submitted in zip(pending, jobs):
        notify("submit", run, index, len(runs))
    failures = []
    for (index, run), submitted in zip(pending, jobs):
        try:
            message = submitted.result()  # the job's one-line error, None when it finished
        except Exception as error:  # noqa: BLE001 - submitit's FailedJobError, UncompletedJobError
            raised = re.findall(r"^[\w.]*(?:Error|Exception): (.+)$", str(error), re.MULTILINE)
            message = (f"{command} {where(run)} failed: "
                       f"{raised[-1] if raised else type(error).__name__}")
        if message is None:
            notify("done", run, index, len(runs))
        else:
            failures.append((run, f"{message} (job {submitted.job_id}, log: "
                                  f"{submitted.paths.stderr})"))
    if failures:
        run, message = failures[0]
        more = f"; {len(failures) - 1} more failed" if len(failures) > 1 else ""
        raise SweepCellError(message + more, run)


class _RunJob:
    """What a submitit job runs: :func:`execute_runs` on one run (checkpointable: a preempted
    job is requeued and resumes from the run's last.pt)."""

    def __init__(self, command: str, where: Callable[[Any], str]) -> None:
        self.command, self.where = command, where

    def __call__(self, run: Any) -> str | None:
        try:
            execute_runs([run], command=self.command, where=self.where)
        except SweepCellError as error:  # one line for the submitting process to raise
            return str(error)
        return None

    def checkpoint(self, run: Any):
        import submitit

        return submitit.helpers.DelayedSubmission(self, run)


def check_finished(sweep_run: Any, what: str) -> None:
    """Refuse a finished run (``run_dir``, ``recipe``) whose recipe is not ``sweep_run.recipe``
    (the same rule as resume); ``what`` names it in the error."""
    saved_path = sweep_run.run_dir / "recipe.yaml"
    if not saved_path.is_file():
        raise SweepCellError(
            f"{what}: {sweep_run.run_dir} has metrics.json but no "
            "recipe.yaml, so it cannot be checked: delete that folder to rerun it", sweep_run
        )
    changed = _same_experiment(load_recipe(saved_path), sweep_run.recipe)
    if changed:
        raise SweepCellError(
            f"{what}: {sweep_run.run_dir} finished with another recipe "
            f"(differs in {', '.join(changed[:5])}): use another --output, or delete that folder "
            "to rerun it", sweep_run
        )

