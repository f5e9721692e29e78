"""Loggers: where a run's parameters, losses and metrics go besides ``log.csv`` (Lightning's term).

A logger is any object with the four methods of :class:`Logger` (Lightning's names):
``log_hyperparams(params)``, ``log_metrics(metrics, step)``, ``log_artifacts(run_dir)`` and
``finalize(status)``. The recipe key ``loggers`` names them from the ``loggers`` registry
(built-ins ``csv``, ``tensorboard``, ``mlflow``; plugins add more with the ``register_loggers``
hook). :func:`open_loggers` builds them before training, so a missing package or an unreachable
tracking server is a one-line :class:`~synergic.errors.SynergicError` before any image is decoded;
:class:`LoggerCollection` then feeds them from the trainer's callbacks and switches off, with one
warning, a logger that raises during the run: a logger never costs a run.

What each logger receives, with the same values and steps as ``log.csv``:

- ``log_hyperparams``: the flattened recipe, ``{"train.optimizer.lr": 0.0001, ...}``
  (:func:`flat_params`);
- ``log_metrics`` at every logged step: ``train/loss``, ``train/ce_1``, ...,
  ``train/synergic_12``, ``train/lr``, ``train/seconds_per_step``;
- at every validation: ``val/<metric>`` and ``val/component_<k>/<metric>`` (AP, AUC, ...);
- at the end, at the last step: ``test/<metric>``, ``test/component_<k>/<metric>`` and, with
  ``train.n_bootstrap > 0``, ``test/<metric>_ci_low`` and ``_ci_high`` (:func:`result_metrics`);
- ``log_artifacts(run_dir)`` once the results are written, then ``finalize("success")``
  (``"failed"`` or ``"interrupted"`` when the run stops early, in training or after it:
  :meth:`LoggerCollection.finalized`).

Only rank 0 logs under torch.distributed. Importing this module does not import torch.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from synergic.errors import SynergicError, describe_error, did_you_mean

__all__ = [
    "Logger",
    "LoggerCollection",
    "LoggerWarning",
    "STATUSES",
    "flat_params",
    "missing_package",
    "open_loggers",
    "result_metrics",
]

STATUSES = ("success", "failed", "interrupted")
"""The ``status`` values :meth:`Logger.finalize` receives (Lightning's ``"success"`` and
``"failed"``, plus ``"interrupted"`` for a run stopped by a signal, to be resumed)."""


class LoggerWarning(UserWarning):
    """A logger failed during a run and was switched off; the run went on (``log.csv`` is whole)."""


@runtime_checkable
class Logger(Protocol):
    """What synergic calls on a logger, in this order: ``log_hyperparams`` once the run directory
    is written, ``log_metrics`` at every logged step and validation and for the test metrics,
    ``log_artifacts`` once the results are written, ``finalize`` last.

    A logger is built by its factory (registered with the ``register_loggers`` hook) called as
    ``factory(*, run_dir, experiment, resume, start_step, **options)`` before training: it checks
    what can fail (a package, a server) and raises a one-line ``SynergicError``, but writes
    nothing until its first ``log_*`` call (the run directory may not exist yet). ``run_dir``
    (``Path``, or ``None`` for ``synergic recipe check``) is the run directory, ``experiment``
    the recipe's ``name``, ``resume`` whether the run continues an earlier one from step
    ``start_step`` (the checkpoint's; 0 for a new run), and ``options`` the recipe's
    ``loggers[i].options``.
    """

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        """``params``: the flattened recipe, dotted keys to JSON scalars or lists."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """``metrics``: names such as ``train/loss`` or ``val/ap`` to floats, at ``step``
        (1-based training step, as in ``log.csv``)."""

    def log_artifacts(self, run_dir: Path) -> None:
        """The finished run directory, whose files a logger may store."""

    def finalize(self, status: str) -> None:
        """The run ended with ``status`` (one of :data:`STATUSES`): flush and close."""


def missing_package(logger: str, package: str, error: ImportError) -> SynergicError:
    """The one-line error of a logger whose package is not installed, giving the pip command."""
    return SynergicError(
        f"loggers: the '{logger}' logger needs {package}, which cannot be imported "
        f"({error}): pip install \"synergic[{logger}]\""
    )


def flat_params(recipe: Any) -> dict[str, Any]:
    """The recipe as ``{"dotted.key": value}``: its leaves, as in the key reference (a
    :class:`~synergic.recipe.Recipe` or its ``model_dump(mode="json")``). Lists (``loggers``) stay
    lists; empty mappings (``options: {}``) have no leaves."""
    from synergic.recipe.loading import _flatten

    data = recipe if isinstance(recipe, Mapping) else recipe.model_dump(mode="json")
    return {".".join(path): value for path, value in _flatten(data).items()}


def result_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The test metrics of a ``metrics.json`` document as logger metrics: ``test/<m>``,
    ``test/component_<k>/<m>`` and, where ``test_ci``/``test_components_ci`` hold 95 %
    intervals, ``..._ci_low`` and ``..._ci_high``. Values that are not finite numbers (an
    undefined AUC is ``null`` in metrics.json) are left out."""
    out: dict[str, float] = {}

    def put(prefix: str, values: Mapping[str, Any] | None, intervals: Mapping[str, Any] | None):
        for name, value in (values or {}).items():
            _put_number(out, f"{prefix}{name}", value)
        for name, interval in (intervals or {}).items():
            if isinstance(interval, Sequence) and len(interval) == 2:
                _put_number(out, f"{prefix}{name}_ci_low", interval[0])
                _put_number(out, f"{prefix}{name}_ci_high", interval[1])

    put("test/", metrics.get("test"), metrics.get("test_ci"))
    components = metrics.get("test_components") or []
    intervals = metrics.get("test_components_ci") or [None] * len(components)
    for k, (values, ci) in enumerate(zip(components, intervals)):
        put(f"test/component_{k + 1}/", values, ci)
    return out


def validation_metrics(evaluation: Any) -> dict[str, float]:
    """``val/<m>`` and ``val/component_<k>/<m>`` of an
    :class:`~synergic.training.evaluation.Evaluation` (finite values only)."""
    out: dict[str, float] = {}
    for name, value in evaluation.metrics.items():
        _put_number(out, f"val/{name}", value)
    for k, values in enumerate(getattr(evaluation, "component_metrics", None) or []):
        for name, value in values.items():
            _put_number(out, f"val/component_{k + 1}/{name}", value)
    return out


def _put_number(out: dict[str, float], key: str, value: Any) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        out[key] = float(value)


class LoggerCollection:
    """Several loggers behind one :class:`Logger` interface, and a trainer callback
    (``on_log``, ``on_validation``) that feeds them.

    A logger whose method raises is switched off for the rest of the run with one
    :class:`LoggerWarning` naming it, the call and the error; the others go on, and so does the
    run. ``names[i]`` names ``loggers[i]`` in that warning.
    """

    def __init__(self, loggers: Sequence[Logger] = (), names: Sequence[str] | None = None) -> None:
        self.loggers = list(loggers)
        self.names = list(names) if names is not None else [
            type(logger).__name__ for logger in self.loggers
        ]
        self._off: set[int] = set()

    def __len__(self) -> int:
        return len(self.loggers)

    def _call(self, method: str, *args: Any) -> None:
        for index, logger in enumerate(self.loggers):
            if index in self._off:
                continue
            try:
                getattr(logger, method)(*args)
            except Exception as error:  # a logger never costs the run
                self._off.add(index)
                warnings.warn(
                    f"logger '{self.names[index]}' failed in {method} ({describe_error(error)}) "
                    "and is off for the rest of this run; the run goes on and "
                    "log.csv and metrics.json are complete",
                    LoggerWarning, stacklevel=3,
                )

    # -- Logger ---------------------------------------------------------------------------------

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        self._call("log_hyperparams", dict(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if metrics:
            self._call("log_metrics", dict(metrics), int(step))

    def log_artifacts(self, run_dir: Path) -> None:
        self._call("log_artifacts", Path(run_dir))

    def finalize(self, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        self._call("finalize", status)

    @contextlib.contextmanager
    def finalized(
        self, interruptions: tuple[type[BaseException], ...] = (KeyboardInterrupt,)
    ) -> Iterator[LoggerCollection]:
        """Finalize the loggers however the ``with`` block ends: ``"success"`` when it ends
        normally; ``"interrupted"`` on one of ``interruptions`` (Ctrl-C;
        :func:`synergic.experiment.run` adds the trainer's stop on SIGTERM); ``"failed"`` on any
        other exception, which is raised on. So an MLflow run is never left RUNNING by a run that
        stopped (MLflow's FINISHED, KILLED, FAILED)."""
        try:
            yield self
        except BaseException as error:
            self.finalize("interrupted" if isinstance(error, interruptions) else "failed")
            raise
        self.finalize("success")

    # -- trainer callbacks (synergic.training.Trainer) -----------------------------------------

    def on_log(self, trainer: Any, row: Mapping[str, Any]) -> None:
        """A row of ``log.csv``: its loss terms, learning rate and seconds per step, at its step."""
        metrics: dict[str, float] = {}
        for name, value in row.items():
            if name != "step":
                _put_number(metrics, f"train/{name}", value)
        self.log_metrics(metrics, int(row["step"]))

    def on_validation(self, trainer: Any, evaluation: Any) -> None:
        self.log_metrics(validation_metrics(evaluation), trainer.state.step)


def open_loggers(
    specs: Sequence[Any], *, run_dir: Path | None, experiment: str, resume: bool = False,
    start_step: int = 0,
) -> LoggerCollection:
    """Build the loggers of the recipe key ``loggers`` (``specs``: its items, each with ``name``
    and ``options``) for the run in ``run_dir``.

    ``csv`` is the trainer's ``log.csv`` (always written, see
    :class:`~synergic.loggers.csv.CSVLogger`), so it is skipped here; a logger named twice is
    built once.

    Raises:
        UnknownNameError: a name not in the ``loggers`` registry (the valid ones and the closest).
        SynergicError: an option the factory does not take (``loggers[i].options.KEY``), a
            missing package (with the pip command), an unreachable tracking server: whatever the
            factory refuses, in one line.
    """
    from synergic import registry

    loggers, names, seen = [], [], set()
    for index, spec in enumerate(specs):
        name, options = spec.name, dict(spec.options)
        if name == "csv" or name in seen:
            continue
        seen.add(name)
        entry = registry.loggers.entry(name)
        factory = entry.factory
        _check_options(factory, name, index, options)
        logger = factory(
            run_dir=Path(run_dir) if run_dir is not None else None, experiment=experiment,
            resume=resume, start_step=int(start_step), **options,
        )
        loggers.append(logger)
        names.append(name)
    return LoggerCollection(loggers, names)


def _check_options(factory: Any, name: str, index: int, options: Mapping[str, Any]) -> None:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    kinds = inspect.Parameter
    if any(p.kind is kinds.VAR_KEYWORD for p in parameters.values()):
        return
    framework = ("run_dir", "experiment", "resume", "start_step")
    choices = [k for k, p in parameters.items()
               if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY) and k not in framework]
    for key in options:
        if key in framework:
            raise SynergicError(
                f"loggers[{index}].options.{key}: synergic passes {key} to logger '{name}' itself: "
                "remove it"
            )
        if key not in choices:
            raise SynergicError(
                f"loggers[{index}].options.{key}: logger '{name}' has no option "
                f"'{key}'{did_you_mean(key, choices)}; its options: {', '.join(choices) or '(none)'}"
            )
