"""The ``tensorboard`` logger: event files under ``RUN_DIR/tensorboard/``, written by
``torch.utils.tensorboard.SummaryWriter`` (needs ``pip install "synergic[tensorboard]"``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synergic.loggers import missing_package

LOG_DIR = "tensorboard"


class TensorBoardLogger:
    """TensorBoard event files in RUN_DIR/tensorboard/ (torch.utils.tensorboard).

    Scalars (``train/loss``, ``val/ap``, ``test/auc``, ...) at their steps, and the recipe as
    hyperparameters (TensorBoard's HPARAMS tab).

    ``tensorboard --logdir RUN_DIR`` (or a folder of runs) shows them. A resumed run opens a
    new event file with ``purge_step`` = the checkpoint's step + 1, so TensorBoard drops the
    events an interrupted run wrote after its checkpoint, which the resumed run writes again.

    Args:
        run_dir: the run directory (``None``: only check that the package is installed).
        experiment: the recipe's name (unused: the run directory names the run).
        resume: the run continues from ``start_step``.
        start_step: the checkpoint's step (0 for a new run).
        flush_secs: write pending events to disk at least this often, in seconds.

    Raises:
        SynergicError: the tensorboard package is missing (one line with the pip command).
    """

    def __init__(
        self, *, run_dir: Path | None, experiment: str, resume: bool = False, start_step: int = 0,
        flush_secs: int = 30,
    ) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter  # imports the tensorboard package
        except ImportError as error:
            raise missing_package("tensorboard", "the tensorboard package", error) from None
        self._writer_class = SummaryWriter
        self.log_dir = Path(run_dir) / LOG_DIR if run_dir is not None else None
        self.purge_step = start_step + 1 if resume else None
        self.flush_secs = flush_secs
        self._writer = None

    @property
    def writer(self):
        """The ``SummaryWriter``, opened at the first call that writes."""
        if self._writer is None:
            if self.log_dir is None:
                raise ValueError("the tensorboard logger was built without a run directory")
            self._writer = self._writer_class(
                log_dir=str(self.log_dir), purge_step=self.purge_step, flush_secs=self.flush_secs
            )
        return self._writer

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        values = {key: _hparam_value(value) for key, value in params.items()}
        # Into the run's own event file (as Lightning does), not add_hparams' extra sub-run.
        experiment, start, end = hparams(values, {})
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, global_step=step)

    def log_artifacts(self, run_dir: Path) -> None:
        """Nothing: the event files are in the run directory."""

    def finalize(self, status: str) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _hparam_value(value: Any) -> int | float | str | bool:
    # TensorBoard's hparams take numbers, strings and booleans.
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)
