"""The ``mlflow`` logger: an MLflow run per synergic run, in an MLflow experiment named after the
recipe (needs ``pip install "synergic[mlflow]"``: mlflow-skinny, plus SQLAlchemy and Alembic for
a ``sqlite:///`` or other database store)."""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from synergic.errors import SynergicError, describe_error
from synergic.loggers import missing_package

#: MLflow's run status for each ``finalize`` status.
RUN_STATUS = {"success": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
#: Where ``run.json`` records the MLflow run, so that a resumed run continues it.
RECORD_KEY = "mlflow"
_MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter's value
_BATCH = {"params": 100, "metrics": 1000}  # MLflow's limits per log_batch call
_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")  # MLflow's SQLAlchemy stores
QUIETED_LOGGERS = ("mlflow", "sqlalchemy", "alembic", "huey")
"""Python loggers silenced while synergic drives MLflow (:func:`quiet_mlflow_logging`)."""


class TrackingStoreError(RuntimeError):
    """The tracking store's database failed during a run (the database driver's error, in one
    line: MLflow's own message carries the whole SQL statement)."""


@contextlib.contextmanager
def quiet_mlflow_logging() -> Iterator[None]:
    """Silence MLflow's Python loggers, and those of SQLAlchemy and Alembic under it, for the
    ``with`` block; restore them afterwards.

    MLflow logs at INFO when it creates a database store ("Creating initial MLflow database
    tables...") and, when a database call fails, logs the whole SQLAlchemy traceback at ERROR
    before it raises. synergic reports what matters itself, in one line: a start that fails is a
    :class:`~synergic.errors.SynergicError`, a failure during the run one
    :class:`~synergic.loggers.LoggerWarning`. Outside the block (a library user's own MLflow
    calls) nothing changes.
    """
    manager = logging.Logger.manager
    saved: list[tuple[logging.Logger, bool, int]] = []
    for name in QUIETED_LOGGERS:
        # The top logger's level covers descendants created inside the block (NOTSET inherits).
        top = logging.getLogger(name)
        saved.append((top, top.disabled, top.level))
        top.setLevel(logging.CRITICAL + 1)
        for other, logger in list(manager.loggerDict.items()):
            if other.startswith(name + ".") and isinstance(logger, logging.Logger):
                saved.append((logger, logger.disabled, logger.level))
    for logger, _, _ in saved:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled, level in reversed(saved):
            logger.disabled = disabled
            logger.setLevel(level)


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _quietly(method: _Method) -> _Method:
    """Run an :class:`MLflowLogger` method with MLflow's Python loggers silenced, and a database
    failure raised as one line (:class:`TrackingStoreError`)."""

    @functools.wraps(method)
    def wrapper(self: MLflowLogger, *args: Any, **kwargs: Any) -> Any:
        with quiet_mlflow_logging():
            try:
                return method(self, *args, **kwargs)
            except Exception as error:
                cause = database_error(error)
                if cause is None or isinstance(error, TrackingStoreError):
                    raise
                raise TrackingStoreError(f"{self.tracking_uri}: {cause}") from error

    return wrapper  # type: ignore[return-value]


def database_error(error: BaseException) -> str | None:
    """``module.Type: first line`` of the database driver's exception behind ``error`` (an
    ``MlflowException`` raised from a SQLAlchemy ``DBAPIError``, whose ``orig`` is the driver's
    exception, e.g. ``sqlite3.OperationalError: attempt to write a readonly database``), or
    ``None`` when no database error caused it."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException):
            kind = type(orig)
            module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
            return f"{module}{describe_error(orig)}"
        current = current.__cause__ or current.__context__
    return None


class MLflowLogger:
    """An MLflow run per synergic run: the recipe, the metrics, the files as artifacts.

    Parameters (the flattened recipe), metrics at their steps, and the run directory's files
    as artifacts, in one MLflow run (named after the run directory) of the MLflow experiment
    named after the recipe, through ``mlflow.MlflowClient``.

    The tracking store is ``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's default
    (``mlflow.get_tracking_uri()``: ``sqlite:///mlflow.db`` in the working directory since MLflow
    3). The run's id is recorded in ``run.json`` (``mlflow.run_id``): a resumed run logs into the
    same MLflow run. A new experiment stores its artifacts at ``artifact_location`` (default:
    the store's, ``./mlruns`` beside a database store).

    Args:
        run_dir: the run directory (``None``: only check, creating nothing: the package, the
            URI's scheme, a server's reachability; the store is not opened).
        experiment: the MLflow experiment's name: the recipe's ``name``.
        resume: continue the MLflow run recorded in ``run.json``, when there is one.
        start_step: the checkpoint's step (0 for a new run).
        tracking_uri: the tracking store: a server (``http://host:5000``), a database
            (``sqlite:///path/mlflow.db``) or a folder (``file:///path/mlruns``).
        artifact_location: where a new experiment keeps its artifacts.
        log_checkpoints: also store ``checkpoints/`` as artifacts (large: off by default).

    Raises:
        SynergicError: mlflow (or SQLAlchemy for a database store) is missing, the URI's scheme
            is not supported, or the tracking store cannot be reached or read (one line, before
            training).
    """

    def __init__(
        self, *, run_dir: Path | None, experiment: str, resume: bool = False, start_step: int = 0,
        tracking_uri: str | None = None, artifact_location: str | None = None,
        log_checkpoints: bool = False,
    ) -> None:
        try:
            import mlflow
            from mlflow import MlflowClient
        except ImportError as error:
            raise missing_package("mlflow", "the mlflow package (mlflow-skinny)", error) from None
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.experiment = experiment
        self.resume = resume
        self.artifact_location = artifact_location
        self.log_checkpoints = log_checkpoints
        self.run_id: str | None = None
        self._resumed_params: dict[str, str] = {}
        where = (
            "loggers[].options.tracking_uri" if tracking_uri
            else "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI")
            else "MLflow's default store"
        )
        if urlparse(self.tracking_uri).scheme.split("+")[0] in _DATABASE_SCHEMES:
            try:  # MLflow's own message for a missing SQLAlchemy is about the model registry
                importlib.import_module("alembic")
                importlib.import_module("sqlalchemy")
            except ImportError as error:
                raise missing_package("mlflow", "SQLAlchemy and Alembic", error) from None
        # After `import mlflow`, which sets its loggers' levels on first import.
        with quiet_mlflow_logging():
            if self.run_dir is None:  # `synergic recipe check`: a check creates no store
                self.client: Any = None
                self._check_store(where)
            else:
                self.client = self._open_store(MlflowClient, where)

    def _check_store(self, where: str) -> None:
        """What can be checked without opening the store, which would create it (MLflow's
        default ``sqlite:///mlflow.db`` in the working directory): a server that accepts a
        connection, and a URI scheme that MLflow has a tracking store for. Not checked: whether
        the store opens (credentials, a database's schema, write permission)."""
        _check_reachable(self.tracking_uri, where)
        try:  # MLflow's registry of tracking stores (with its plugins'), a private module
            from mlflow.tracking._tracking_service.utils import _tracking_store_registry
        except ImportError:
            return  # another MLflow layout: the run's start checks the scheme
        try:
            _tracking_store_registry.get_store_builder(self.tracking_uri)
        except Exception as error:
            raise self._store_error(error, where) from None

    def _open_store(self, client_class: type, where: str) -> Any:
        _check_reachable(self.tracking_uri, where)
        try:
            client = client_class(tracking_uri=self.tracking_uri)
            client.get_experiment_by_name(self.experiment)  # opens (or creates) the store
        except ImportError as error:
            raise missing_package("mlflow", "a package of the mlflow extra", error) from None
        except Exception as error:
            raise self._store_error(error, where) from None
        return client

    def _store_error(self, error: Exception, where: str) -> SynergicError:
        schemes = getattr(error, "supported_uri_schemes", None)
        if schemes is not None:  # MLflow words this as the model registry's problem
            scheme = urlparse(self.tracking_uri).scheme
            return SynergicError(
                f"loggers: unsupported MLflow tracking URI scheme '{scheme}' in "
                f"{self.tracking_uri} (from {where}; supported: "
                f"{', '.join(s for s in schemes if s)}): correct the URI or remove mlflow "
                "from loggers"
            )
        reason = database_error(error) or describe_error(error)
        return SynergicError(
            f"loggers: the mlflow logger cannot use the tracking store {self.tracking_uri} "
            f"(from {where}): {reason}; correct the store or remove mlflow from loggers"
        )

    # -- the MLflow run -------------------------------------------------------------------------

    def _start(self) -> str:
        if self.run_id is not None:
            return self.run_id
        if self.run_dir is None:
            raise ValueError("the mlflow logger was built without a run directory")
        from synergic.rundir import read_run_record, update_run_record

        if self.resume:
            recorded = read_run_record(self.run_dir).get(RECORD_KEY) or {}
            if recorded.get("run_id") and recorded.get("tracking_uri") == self.tracking_uri:
                run = self.client.get_run(recorded["run_id"])
                self.client.update_run(run.info.run_id, status="RUNNING")
                self._resumed_params = dict(run.data.params)
                self.run_id = run.info.run_id
                return self.run_id
        found = self.client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found is not None else self.client.create_experiment(
            self.experiment, artifact_location=self.artifact_location
        )
        run = self.client.create_run(
            experiment_id, run_name=self.run_dir.name,
            tags={"synergic.run_dir": str(self.run_dir.resolve())},
        )
        self.run_id = run.info.run_id
        update_run_record(self.run_dir, **{RECORD_KEY: {
            "run_id": self.run_id, "experiment_id": experiment_id,
            "tracking_uri": self.tracking_uri,
        }})
        return self.run_id

    # -- Logger -----------------------------------------------------------------------------

    @_quietly
    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        """The flattened recipe as MLflow parameters. MLflow keeps a parameter's first value: a
        resumed run adds the keys that are new and leaves the others as logged."""
        import json

        from mlflow.entities import Param

        run_id = self._start()
        values = {
            key: (value if isinstance(value, str) else json.dumps(value))[:_MAX_PARAM_LENGTH]
            for key, value in params.items() if key not in self._resumed_params
        }
        for chunk in _chunks([Param(k, v) for k, v in values.items()], _BATCH["params"]):
            self.client.log_batch(run_id, params=chunk)

    @_quietly
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        run_id = self._start()
        now = int(time.time() * 1000)
        rows = [Metric(name, float(value), now, int(step)) for name, value in metrics.items()]
        for chunk in _chunks(rows, _BATCH["metrics"]):
            self.client.log_batch(run_id, metrics=chunk)

    @_quietly
    def log_artifacts(self, run_dir: Path) -> None:
        """Every file of the run directory, folders kept (``tensorboard/``), except
        ``checkpoints/`` unless ``log_checkpoints``."""
        run_id = self._start()
        for path in sorted(Path(run_dir).iterdir()):
            if path.name == "checkpoints" and not self.log_checkpoints:
                continue
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), artifact_path=path.name)
            elif path.is_file():
                self.client.log_artifact(run_id, str(path))

    @_quietly
    def finalize(self, status: str) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, RUN_STATUS[status])


def _check_reachable(uri: str, where: str, timeout: float = 5.0) -> None:
    """A tracking server must accept a connection within ``timeout`` seconds: MLflow's own
    client retries for minutes before it gives up."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as error:
        raise SynergicError(
            f"loggers: the mlflow logger cannot reach the tracking server {uri} (from {where}): "
            f"{describe_error(error)}; start the server, correct the URI, or "
            "remove mlflow from loggers"
        ) from None


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])
