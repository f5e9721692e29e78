"""Helpers shared by the tests: the synergic command run in this process, its error lines, a CSV
read back, and a training callback that stops a run as a job scheduler would."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import signal
from pathlib import Path


def _main(args, stdout, stderr, cwd: Path | None) -> int:
    """``synergic ARGS`` (``synergic.cli.main``, as the console script runs it) with its output
    sent to ``stdout`` and ``stderr``, in ``cwd`` when given; its exit code."""
    from synergic.cli import main

    old = Path.cwd() if cwd is not None else None
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                main([str(a) for a in args])
                return 0
            except SystemExit as exit_:
                return exit_.code
    finally:
        if old is not None:
            os.chdir(old)


def invoke(args, cwd: Path | None = None) -> tuple[int, str]:
    """``synergic ARGS`` in this process: exit code, and stdout and stderr together."""
    output = io.StringIO()
    code = _main(args, output, output, cwd)
    return code, output.getvalue()


def invoke_apart(args, cwd: Path | None = None) -> tuple[int, str, str]:
    """``synergic ARGS`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = _main(args, out, err, cwd)
    return code, out.getvalue(), err.getvalue()


def error_lines(output: str) -> list[str]:
    """The lines of a command's output that are errors (``error: ...``)."""
    return [line for line in output.splitlines() if line.startswith("error:")]


def read_csv(path: Path) -> list[list[str]]:
    """The rows of a CSV file that synergic wrote (UTF-8), header included."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


class SigtermAtLog:
    """A training callback that sends this process SIGTERM when a step is logged (the first one
    logged, or ``step``), as a job scheduler would: the trainer finishes the step it is in, saves
    ``checkpoints/last.pt`` and stops."""

    def __init__(self, step: int | None = None) -> None:
        self.step = step

    def on_log(self, trainer, row) -> None:
        if self.step is None or row["step"] == self.step:
            os.kill(os.getpid(), signal.SIGTERM)
