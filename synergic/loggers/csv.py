"""``log.csv``: the training log every run writes (the ``csv`` logger, always on)."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class CSVLogger:
    """The training log as CSV: ``step`` then one column per metric of the first row (the loss
    terms, ``lr``, ``seconds_per_step``), a row per :meth:`log_metrics` call; always on.

    The :class:`~synergic.training.Trainer` writes ``log_path`` through it, so listing ``csv``
    in the recipe's ``loggers`` changes nothing. Rows are appended to ``path`` (the header is
    written when the file is new); :meth:`truncate` keeps the rows up to a resumed step.
    Written with the ``csv`` module of the standard library.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        """Nothing: the recipe is in ``recipe.yaml`` beside ``log.csv``."""

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        row = {"step": step, **metrics}
        new = not self.path.exists()
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def log_artifacts(self, run_dir: Path) -> None:
        """Nothing: ``log.csv`` is in the run directory already."""

    def finalize(self, status: str) -> None:
        """Nothing: every row is written (and closed) as it is logged."""

    def truncate(self, step: int) -> None:
        """Keep the header and the complete rows up to ``step``: the rows written after the
        checkpoint, or half written by a killed process, are logged again by the resumed run.
        A file left with no row is removed (the resumed run writes the header again)."""
        if not self.path.exists():
            return
        with self.path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        header = rows[0] if rows else []
        kept = [
            row for row in rows[1:]
            if len(row) == len(header) and row[0].isdigit() and int(row[0]) <= step
        ]
        if not header or header[0] != "step" or not kept:
            self.path.unlink()
            return
        with self.path.open("w", newline="") as handle:
            csv.writer(handle).writerows([header, *kept])


def csv_logger(
    *, run_dir: Path | None, experiment: str, resume: bool = False, start_step: int = 0
) -> CSVLogger:
    """The training log RUN_DIR/log.csv (step, loss terms, learning rate); always on.

    Columns: step, each loss term, ``lr``, ``seconds_per_step``. Always on: a run writes it through :class:`~synergic.training.Trainer` (``log_path``), so
    :func:`synergic.loggers.open_loggers` skips ``csv`` in the recipe's ``loggers``. This
    factory gives the same logger to code that builds loggers itself.
    """
    if run_dir is None:
        raise ValueError("the csv logger needs a run directory")
    logger = CSVLogger(Path(run_dir) / "log.csv")
    if resume:
        logger.truncate(start_step)
    return logger
