"""A short SDL training loop you can read top to bottom.

Each step: the pair sampler names the images of every component's stream; the images (decoded
once, uint8, resident on the device when they fit) are gathered, augmented in a batch with a
generator seeded from (seed, step, stream), normalised; the model and :class:`SynergicLoss` give
the loss terms; one SGD step; the learning rate follows its schedule. Everything random derives
from the seed and the step, plus the global RNG states saved in each checkpoint, so a resumed
run repeats the uninterrupted one exactly (on the CPU).
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from synergic.aggregators import sum_softmax
from synergic.data.preprocess import normalize
from synergic.errors import SynergicError, first_line
from synergic.loggers.csv import CSVLogger
from synergic.losses import SynergicLoss
from synergic.models.fused import FusedSynergicForward, resolve_fuse_components
from synergic.sampling import PairSampler, step_generator
from synergic.training.checkpoint import (
    capture_rng_state,
    describe_state_dict_mismatch,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    weights_only_state,
)
from synergic.training import distributed
from synergic.training.evaluation import Evaluation, evaluate
from synergic.training.schedules import inverse_time_lr

if TYPE_CHECKING:
    import numpy as np

# Keep the decoded training set on the accelerator when it is at most this large.
DEVICE_RESIDENT_MAX_BYTES = 4 * 1024**3


class NonFiniteLossError(SynergicError):
    pass


class TrainingInterrupted(SynergicError):
    """Training stopped by ``signal`` (``"SIGINT"``, ``"SIGTERM"``) after saving ``last.pt``.
    A stop by Ctrl-C exits 130 (:data:`synergic.errors.INTERRUPTED_EXIT_CODE`), as a Ctrl-C
    anywhere else does; SIGTERM exits 1."""

    def __init__(self, message: str, signal: str | None = None) -> None:
        super().__init__(message)
        self.signal = signal
        if signal == "SIGINT":
            from synergic.errors import INTERRUPTED_EXIT_CODE

            self.exit_code = INTERRUPTED_EXIT_CODE


@dataclass
class Augmentation:
    """The paper's training augmentation: random rotation (degrees, +/-) and flips; ``fill``:
    what rotated-in corners show (``reflect``, ``border`` or ``zeros``, see
    :data:`synergic.data.augment.FILL_MODES`)."""

    rotation: float = 180.0
    hflip: bool = True
    vflip: bool = True
    fill: str = "reflect"

    def __post_init__(self) -> None:
        from synergic.data.augment import FILL_MODES

        if self.fill not in FILL_MODES:
            raise ValueError(f"Augmentation: fill must be one of {', '.join(FILL_MODES)}, got {self.fill!r}")
        if not math.isfinite(self.rotation) or self.rotation < 0:
            raise ValueError(f"Augmentation: rotation must be finite degrees >= 0, got {self.rotation!r}")

    @property
    def enabled(self) -> bool:
        return self.rotation > 0 or self.hflip or self.vflip


@dataclass
class TrainerState:
    step: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    validation_history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SynergicError("train.device is 'cuda' but no CUDA GPU is available: use auto or cpu")
    return device


class Trainer:
    """Train an SDL^n model.

    Args:
        model: a :class:`~synergic.SynergicModel` (or anything with the same forward).
        loss: the :class:`~synergic.SynergicLoss` (lambda and the gradient rule).
        sampler: a pair sampler over the training set (its ``num_streams`` = components).
        images: the training images, uint8 ``[N, 3, H, W]`` (see ``synergic.data.cache``); a
            memory-mapped tensor or an ``ImageRows`` view is read batch by batch, never whole
            (on a GPU, a set of up to 4 GiB is copied to the device once).
        labels: their class labels ``[N]``.
        mean, std: input normalisation (the backbone's, see ``backbone_normalization``).
        iterations: number of SGD steps.
        optimizer: default: the paper's plain SGD with learning rate 1e-4.
        lr_schedule: a multiplier of the initial rate per step; default the paper's
            1 / (1 + 1e-4 t).
        augmentation: default the paper's (rotation, horizontal and vertical flips); ``None``
            for none.
        sync_batchnorm: under torch.distributed, normalise BatchNorm over the global batch
            (:func:`synergic.training.distributed.convert_sync_batchnorm`); ``"auto"``: when
            the model has BatchNorm.
        validation: optional ``(images, labels)`` evaluated every ``eval_every`` steps; the best
            model by ``selection_metric`` is saved as ``best.pt``, weights only (no optimiser
            or random states: it is evaluated, never resumed from).
        selection_metric: a key of ``scorer``'s metrics, higher is better: the data set's
            primary metric (:data:`synergic.data.datasets.base.PRIMARY_METRIC_ATTRIBUTE`).
        scorer: scores probabilities ``[N, K]`` against labels ``[N]`` in every evaluation;
            default :func:`synergic.metrics.compute_metrics`.
        checkpoint_dir: where ``last.pt`` / ``best.pt`` go (nothing is saved without it).
        log_path: a CSV of the training log (step, loss terms, learning rate, seconds per step),
            written by :class:`synergic.loggers.csv.CSVLogger`; trimmed to the step on resume.
        callbacks: objects with any of ``on_log(trainer, record)``,
            ``on_validation(trainer, evaluation)``, ``on_checkpoint(trainer, path)``, called on
            rank 0 only; :class:`synergic.loggers.LoggerCollection` is one (TensorBoard, MLflow).
        metadata: saved in every checkpoint (e.g. the recipe and its hash).
        tta: test-time augmentation of every evaluation, validation included (``none``,
            ``flips``, ``d4``; :mod:`synergic.tta`).
        ema: keyword arguments of timm's ``ModelEmaV3`` (``timm.utils.model_ema``: ``decay``,
            ``update_after_step``, ``use_warmup``, ``device``, ...) to keep an exponential moving
            average of the weights (buffers too), updated after every optimiser step and saved
            as ``model_ema`` in ``last.pt``; None keeps none. Under torch.distributed every rank
            keeps its own (the weights are equal on all ranks; rank 0's buffers are broadcast
            before each evaluation and save, as the model's are).
        report_ema: with ``ema``, evaluate the averaged weights (validation, :meth:`evaluate`)
            and make them ``best.pt``'s ``model``; False evaluates the trained weights.
        fuse_components: run the components as one batched computation
            (:class:`synergic.models.fused.FusedSynergicForward`, ``torch.vmap``): the same
            losses, gradients and BatchNorm statistics up to float reassociation; ``"auto"``: when
            possible and on an accelerator (never on the CPU); True: when possible, else a
            warning says why not (:func:`synergic.models.fused.resolve_fuse_components`).
    """

    def __init__(
        self,
        model: nn.Module,
        loss: SynergicLoss,
        sampler: PairSampler,
        images: torch.Tensor,
        labels: torch.Tensor | Sequence[int],
        *,
        mean: Sequence[float],
        std: Sequence[float],
        iterations: int,
        optimizer: torch.optim.Optimizer | None = None,
        lr_schedule: Callable[[int], float] | None = None,
        augmentation: Augmentation | None = Augmentation(),
        seed: int = 0,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        compile: bool = False,
        fuse_components: bool | str = "auto",
        channels_last: bool = False,
        grad_clip: float | None = None,
        sync_batchnorm: bool | str = "auto",
        validation: tuple[torch.Tensor, torch.Tensor | Sequence[int]] | None = None,
        aggregator: Callable[[list[torch.Tensor]], torch.Tensor] = sum_softmax,
        selection_metric: str = "ap",
        scorer: Callable[[np.ndarray, np.ndarray], dict[str, float]] | None = None,
        eval_every: int = 0,
        eval_batch_size: int = 64,
        checkpoint_every: int = 0,
        checkpoint_dir: str | Path | None = None,
        log_every: int = 10,
        log_path: str | Path | None = None,
        callbacks: Sequence[object] = (),
        metadata: dict[str, Any] | None = None,
        tta: str = "none",
        ema: dict[str, Any] | None = None,
        report_ema: bool = True,
    ) -> None:
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
        if sampler.num_streams != model.num_components:
            raise ValueError(
                f"the sampler gives {sampler.num_streams} streams for {model.num_components} components"
            )
        self.dist = distributed.current()
        distributed.check_batch(sampler.batch_size, self.dist)
        self.device = resolve_device(device)
        # BatchNorm over the global batch, so that N processes compute what one process does.
        self.sync_batchnorm = distributed.wants_sync_batchnorm(sync_batchnorm, model, self.dist)
        if self.sync_batchnorm:
            model = distributed.convert_sync_batchnorm(model, self.device)
        self.model = model.to(self.device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        from synergic.tta import tta_views

        tta_views(tta)  # an unknown mode fails here, not after training
        self.tta = tta
        # Made from the placed model, before DDP wraps it (timm: "sensitive where it is initialized").
        self.ema = _model_ema(self.model, ema) if ema is not None else None
        self.report_ema = self.ema is not None and report_ema
        self.loss = loss
        self.sampler = sampler
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.images = self._place_images(images)
        self.labels_on_device = self.labels.to(self.device)
        self.mean = tuple(mean)
        self.std = tuple(std)
        self._mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        self.iterations = iterations
        self.optimizer = optimizer or default_optimizer(self.model, lr=1e-4)
        self.lr_schedule = lr_schedule or inverse_time_lr(1e-4)
        self._base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.augmentation = augmentation if augmentation and augmentation.enabled else None
        self.seed = seed
        self.precision = precision
        self.channels_last = channels_last
        self.grad_clip = grad_clip
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        self._autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.forward_model = self.model
        if self.dist.enabled:
            # One module holding the components and the synergic heads, wrapped once.
            self.forward_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        # Components of one architecture as one batched computation (synergic.models.fused).
        self.fuse_components, reason = resolve_fuse_components(
            fuse_components, self.model, self.device, distributed=self.dist.enabled, compile=compile
        )
        if self.fuse_components:
            self.forward_model = FusedSynergicForward(self.model)
        elif fuse_components is True and reason:
            import warnings

            warnings.warn(f"train.fuse_components is true but the components run one by one: {reason}",
                          stacklevel=2)
        if compile:
            self.forward_model = torch.compile(self.forward_model)
        self.validation = validation
        self.aggregator = aggregator
        self.selection_metric = selection_metric
        self.scorer = scorer
        self.eval_every = eval_every
        self.eval_batch_size = eval_batch_size
        self.checkpoint_every = checkpoint_every
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.log_every = max(1, log_every)
        self.log_path = Path(log_path) if log_path else None
        # log.csv is the default logger: the others arrive as callbacks (synergic.loggers).
        self.csv_logger = CSVLogger(self.log_path) if self.log_path is not None else None
        self.callbacks = list(callbacks)
        self.metadata = dict(metadata or {})
        self.state = TrainerState()
        self._stop_requested: str | None = None
        self._signal_received: str | None = None

    # -- data -------------------------------------------------------------------------------

    def _place_images(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(self.labels):
            raise ValueError(f"{len(images)} images but {len(self.labels)} labels")
        nbytes = images.numel()
        if self.device.type != "cpu" and nbytes <= DEVICE_RESIDENT_MAX_BYTES:
            return images.to(self.device)
        return images

    def _stream_batch(
        self, indices: torch.Tensor, step: int, stream: int, shard: tuple[int, int] | None = None
    ) -> torch.Tensor:
        # non_blocking: a plain .to() of host indices waits for the GPU to drain; this one does not.
        batch = self.images[indices.to(self.images.device, non_blocking=True)].to(
            self.device, non_blocking=True
        )
        if self.augmentation is not None:
            from synergic.data.augment import augment_batch

            batch = augment_batch(
                batch,
                generator=step_generator(self.seed, step, stream + 1),
                rotation=self.augmentation.rotation,
                hflip=self.augmentation.hflip,
                vflip=self.augmentation.vflip,
                fill=self.augmentation.fill,
                shard=shard,
            )
        # uint8, or augmented floats in [0, 1]: the normalisation evaluation and predict use too.
        batch = normalize(batch, self._mean, self._std)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    # -- one step ---------------------------------------------------------------------------

    def learning_rate(self, step: int) -> float:
        return self._base_lrs[0] * self.lr_schedule(step)

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        """One SGD step at ``step``; returns the detached loss terms (on the device)."""
        for group, base in zip(self.optimizer.param_groups, self._base_lrs):
            group["lr"] = base * self.lr_schedule(step)
        indices = self.sampler.sample(step)
        # Every rank draws the same global batch and keeps its own contiguous share of pairs.
        start, stop = self.dist.shard(indices.shape[1])
        shard = (start, indices.shape[1]) if self.dist.enabled else None
        indices = indices[:, start:stop]
        streams = [self._stream_batch(indices[k], step, k, shard) for k in range(len(indices))]
        labels = self.labels_on_device[indices.to(self.device, non_blocking=True)]
        if not self.model.training:  # .train() walks every submodule: ~1 ms of host time per step
            self.model.train()
        with torch.autocast(self.device.type, dtype=self._autocast_dtype, enabled=self._autocast_dtype is not None):
            output = self.forward_model(streams, synergic_grad_scale=self.loss.feature_grad_scale)
        terms = self.loss(output, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms.total).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model, step=step + 1)  # the number of optimiser steps taken
        record = {"loss": terms.objective.detach()}
        for k, ce in enumerate(terms.classification):
            record[f"ce_{k + 1}"] = ce.detach()
        for (i, j), bce in terms.synergic.items():
            record[f"synergic_{i + 1}{j + 1}"] = bce.detach()
        return record

    # -- the loop ---------------------------------------------------------------------------

    def fit(self) -> TrainerState:
        """Train from ``state.step`` to ``iterations`` (resume by loading a checkpoint first)."""
        pending: tuple[int, dict[str, torch.Tensor], float] | None = None
        tick = time.perf_counter()
        with self._signals_stop_training():
            while self.state.step < self.iterations:
                step = self.state.step
                record = self.train_step(step)
                self.state.step = step + 1
                # Values are read one step late so the device never waits for the host.
                if pending is not None:
                    self._emit_log(*pending)
                    pending = None
                if self.state.step % self.log_every == 0 or self.state.step == self.iterations:
                    now = time.perf_counter()
                    pending = (step, record, (now - tick) / self.log_every)
                    tick = now
                if self.eval_every and self.state.step % self.eval_every == 0:
                    pending = self._flush(pending)
                    self._validate()
                if self.checkpoint_every and self.state.step % self.checkpoint_every == 0:
                    pending = self._flush(pending)
                    self._check_finite(step, record)  # never a checkpoint of diverged weights
                    self.save("last.pt")
                if self._stop_requested:
                    pending = self._flush(pending)
                    self._check_finite(step, record)
                    self.save("last.pt")
                    raise TrainingInterrupted(
                        f"stopped by {self._stop_requested} at step {self.state.step}; "
                        "checkpoint saved: resume to continue", self._stop_requested
                    )
            self._flush(pending)
            if self.validation is not None and (
                not self.state.validation_history
                or self.state.validation_history[-1]["step"] != self.state.step
            ):
                self._validate()
            self.save("last.pt")
        return self.state

    def _check_finite(self, step: int, record: dict[str, torch.Tensor]) -> None:
        self._raise_if_non_finite(step, {name: float(value) for name, value in record.items()})

    def _raise_if_non_finite(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"loss term '{name}' is {value} at step {step + 1}: lower train.optimizer.lr "
                    "or set train.grad_clip in a new run; the last good checkpoint is kept"
                )

    def _flush(self, pending):
        if pending is not None:
            self._emit_log(*pending)
        return None

    def _emit_log(self, step: int, record: dict[str, torch.Tensor], seconds: float) -> None:
        if self.dist.enabled:
            # Losses averaged over ranks; a signal seen by any rank stops all at this same step.
            stacked = torch.stack([v.float().to(self.device) for v in record.values()]
                                  + [torch.tensor(float(self._signal_received is not None), device=self.device)])
            stacked = distributed.average(stacked).cpu()
            if stacked[-1] > 0:
                self._stop_requested = self._signal_received or "a signal to another rank"
            values = {name: float(v) for name, v in zip(record, stacked[:-1].tolist())}
        else:
            values = {name: float(value) for name, value in record.items()}
        self._raise_if_non_finite(step, values)
        row = {"step": step + 1, **values, "lr": self.learning_rate(step), "seconds_per_step": seconds}
        if not self.dist.is_main:
            return
        if self.csv_logger is not None:
            self.csv_logger.log_metrics({k: v for k, v in row.items() if k != "step"}, row["step"])
        for callback in self.callbacks:
            if hasattr(callback, "on_log"):
                callback.on_log(self, row)

    @property
    def reported_model(self) -> nn.Module:
        """The weights the trainer evaluates and ``best.pt`` holds: the EMA copy when it reports
        it (``ema`` with ``report_ema``), else :attr:`model`."""
        return self.ema.module if self.report_ema else self.model

    def evaluate(self, images: torch.Tensor, labels) -> Evaluation:
        """Predict and score ``images`` (uint8 ``[N, 3, H, W]``) with the current weights (the
        EMA weights when it reports them) and its ``tta``; under torch.distributed every rank
        must call it (rank 0's buffers are broadcast first)."""
        model = self.reported_model
        distributed.broadcast_buffers(model)
        return evaluate(
            model, images, labels, mean=self.mean, std=self.std, aggregator=self.aggregator,
            batch_size=self.eval_batch_size, device=next(model.parameters()).device,
            precision=self.precision, channels_last=self.channels_last, scorer=self.scorer,
            tta=self.tta,
        )

    def on_cadence(self, step: int) -> bool:
        """Whether ``step`` is one of the ``eval_every`` validations (not only a run's last)."""
        return bool(self.eval_every) and step % self.eval_every == 0

    def _validate(self) -> None:
        if self.validation is None:
            return
        result = self.evaluate(*self.validation)
        value = result.metrics.get(self.selection_metric, float("nan"))
        entry = {"step": self.state.step, **result.metrics}
        self.state.validation_history.append(entry)
        # Only the validations on the eval_every cadence compete for best.pt. The one at a last
        # step off the cadence is a candidate of that run only (its last weights, see
        # synergic.experiment.evaluate_selected): a run extended past that step must select
        # exactly as the run trained to the new total from the start, which never validated there.
        improved = self.on_cadence(self.state.step) and math.isfinite(value) and (
            self.state.best_metric is None or value > self.state.best_metric
        )
        if improved:
            self.state.best_metric = value
            self.state.best_step = self.state.step
            self.save("best.pt", weights_only=True)
        for callback in self.callbacks if self.dist.is_main else ():
            if hasattr(callback, "on_validation"):
                callback.on_validation(self, result)

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        from synergic import __version__

        return {
            "synergic_version": __version__,
            "step": self.state.step,
            "best_metric": self.state.best_metric,
            "best_step": self.state.best_step,
            "validation_history": self.state.validation_history,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "metadata": self.metadata,
            **self._ema_state(),
        }

    def _ema_state(self) -> dict[str, Any]:
        if self.ema is None:
            return {}
        return {
            "model_ema": self.ema.module.state_dict(),
            "reported_weights": "model_ema" if self.report_ema else "model",
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [key for key in ("model", "optimizer", "scaler", "rng", "step") if key not in state]
        if missing and state.get("weights_only"):
            raise SynergicError(
                "the checkpoint holds weights only (best.pt is written without optimiser and "
                "random states): resume from last.pt"
            )
        if missing:
            raise SynergicError(
                f"the checkpoint lacks {', '.join(missing)}: it is not a training checkpoint of "
                "synergic's Trainer"
            )
        mismatch = describe_state_dict_mismatch(self.model.state_dict(), state["model"])
        if mismatch:
            raise SynergicError(
                f"the checkpoint holds another model ({mismatch}): resume with the recipe that "
                "wrote it, or start a new run"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise SynergicError(
                f"the checkpoint does not fit this model or optimiser: {first_line(error)}"
            ) from None
        self._load_ema(state)
        self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        self.state = TrainerState(
            step=int(state["step"]),
            best_metric=state["best_metric"],
            best_step=state["best_step"],
            validation_history=list(state["validation_history"]),
        )

    def _load_ema(self, state: dict[str, Any]) -> None:
        if self.ema is None:
            if "model_ema" in state:
                raise SynergicError(
                    "the checkpoint holds EMA weights (model_ema) but this trainer keeps no EMA: "
                    "resume with the train.ema of the recipe that wrote it"
                )
            return
        if "model_ema" not in state:
            raise SynergicError(
                "the checkpoint holds no EMA weights (model_ema): it was written without "
                "train.ema; resume with the recipe that wrote it, or start a new run"
            )
        self.ema.module.load_state_dict(state["model_ema"])

    def save(self, name: str, *, weights_only: bool = False) -> Path | None:
        """Write ``checkpoint_dir/name`` (rank 0 only): :meth:`state_dict`, or with
        ``weights_only`` its :func:`~synergic.training.checkpoint.weights_only_state`."""
        # Every rank holds the buffers rank 0 saves: evaluations after it use the saved weights.
        distributed.broadcast_buffers(self.model)
        if self.ema is not None:
            distributed.broadcast_buffers(self.ema.module)
        if self.checkpoint_dir is None or not self.dist.is_main:
            return None
        path = self.checkpoint_dir / name
        state = self.state_dict()
        save_checkpoint(path, weights_only_state(state) if weights_only else state)
        for callback in self.callbacks:
            if hasattr(callback, "on_checkpoint"):
                callback.on_checkpoint(self, path)
        return path

    def resume(self, checkpoint: str | Path | dict[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`save` (a path, or the dict that
        :func:`load_checkpoint` read); trims the log to its step."""
        state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
        self.load_state_dict(state)
        # A validation off the eval_every cadence was the last step of an earlier leg (a run
        # since extended); the run trained in one go has none there. If this run ends at that
        # same step, fit() validates it again, with the same result.
        self.state.validation_history = [
            entry for entry in self.state.validation_history if self.on_cadence(entry["step"])
        ]
        if self.dist.is_main and self.csv_logger is not None:
            self.csv_logger.truncate(self.state.step)

    @contextmanager
    def _signals_stop_training(self):
        """SIGTERM (and Ctrl-C) finish the current step, save ``last.pt`` and stop."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, frame):
            self._signal_received = signal.Signals(signum).name
            if not self.dist.enabled:  # distributed ranks agree on the stop at a log step
                self._stop_requested = self._signal_received

        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _model_ema(model: nn.Module, options: dict[str, Any]) -> nn.Module:
    """timm's ``ModelEmaV3`` of ``model`` with ``options`` (its keyword arguments)."""
    from timm.utils.model_ema import ModelEmaV3

    options = dict(options)
    if options.get("device") is not None:
        options["device"] = torch.device(options["device"])
    try:
        return ModelEmaV3(model, **options)
    except TypeError as error:
        raise SynergicError(f"train.ema: {error}; see timm.utils.model_ema.ModelEmaV3") from None


def default_optimizer(
    model: nn.Module, *, lr: float = 1e-4, momentum: float = 0.0, weight_decay: float = 0.0,
    nesterov: bool = False,
) -> torch.optim.SGD:
    """The paper's mini-batch SGD; fused kernels on CUDA, foreach elsewhere."""
    params = [p for p in model.parameters() if p.requires_grad]
    on_cuda = any(p.is_cuda for p in params)
    kwargs = {"fused": True} if on_cuda else {"foreach": True}
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, **kwargs
    )
