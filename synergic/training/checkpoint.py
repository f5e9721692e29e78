"""Checkpoints: written atomically, read weights-only.

A checkpoint is a dict of plain Python values and tensors, so ``torch.load(weights_only=True)``
can read it: no pickled code runs when a file from elsewhere is opened.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synergic.errors import SynergicError

FORMAT = 1

TRAINING_STATE_KEYS: tuple[str, ...] = ("optimizer", "scaler", "rng")
"""What a checkpoint needs beyond the weights to continue training: the optimiser state (momentum
buffers: as large as the weights when momentum > 0), the fp16 gradient scaler and the global random
states. ``last.pt`` holds them; ``best.pt`` does not (see :func:`weights_only_state`)."""


def atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, fsync it and move it into
    place, so ``path`` is either the old file or the complete new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would, so results
        # are as readable by others as log.csv is under the user's umask.
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _current_umask() -> int:
    # os.umask can only be read by setting it; set it straight back (process-wide, instant).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class _WriteErrorRecorder:
    """Passes writes through and remembers the OSError of a failed one: torch.save turns it into
    an opaque RuntimeError ("unexpected pos ..."), which would hide a full disk."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.handle.flush()


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus the format number) to ``path`` atomically.

    Raises a one-line :class:`SynergicError` when the write fails (disk full, no permission);
    the file that was at ``path`` before stays as it was.
    """

    def write(handle) -> None:
        recorder = _WriteErrorRecorder(handle)
        try:
            torch.save({"format": FORMAT, **state}, recorder)
        except RuntimeError:
            if recorder.error is not None:
                raise recorder.error from None
            raise

    try:
        atomic_write(Path(path), write)
    except OSError as error:
        raise SynergicError(
            f"could not write checkpoint {path}: {error.strerror or error}; "
            "the previous checkpoint is intact: free disk space and resume"
        ) from None


def weights_only_state(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` (a :meth:`Trainer.state_dict <synergic.Trainer.state_dict>`) without
    :data:`TRAINING_STATE_KEYS`, marked ``"weights_only": True``: what evaluation and prediction
    read (``model``, ``step``, ``best_metric``, ``best_step``, ``validation_history``,
    ``metadata``, ``synergic_version``), about half the size of a resumable checkpoint when the
    optimiser has momentum. Such a checkpoint cannot be resumed from.

    A run that reports its EMA weights (``state["reported_weights"] == "model_ema"``) has them
    moved into ``model`` here, marked ``"model_is_ema": True``, so that every reader of
    ``state["model"]``, older ones included, gets the weights the run reported."""
    kept = {key: value for key, value in state.items() if key not in TRAINING_STATE_KEYS}
    if kept.get("reported_weights") == "model_ema":
        kept["model"] = kept.pop("model_ema")
        kept["reported_weights"] = "model"
        kept["model_is_ema"] = True
    kept["weights_only"] = True
    return kept


def reported_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The model weights a checkpoint's run reports: ``state["model_ema"]`` (the EMA of the
    weights, ``train.ema``) when ``state["reported_weights"]`` says ``"model_ema"``, else
    ``state["model"]`` (every checkpoint without EMA, and every ``best.pt``).

    Raises:
        SynergicError: a checkpoint that names EMA weights it does not hold."""
    key = state.get("reported_weights", "model")
    if key not in ("model", "model_ema") or key not in state:
        raise SynergicError(
            f"the checkpoint reports its weights under '{key}' but holds no such entry: it is "
            "damaged; restore it from a copy"
        )
    return state[key]


def is_resumable(state: dict[str, Any]) -> bool:
    """Whether a checkpoint (as :func:`load_checkpoint` returns it) holds what training needs
    to continue: the weights, the step and every key of :data:`TRAINING_STATE_KEYS`."""
    return all(key in state for key in ("model", "step", *TRAINING_STATE_KEYS))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path`` as a dict (tensors on the CPU), read with
    ``torch.load(weights_only=True)``: no pickled code runs.

    Raises:
        SynergicError: no such file; a file that is truncated, corrupt or not a synergic
            checkpoint of format :data:`FORMAT` (one line naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise SynergicError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise SynergicError(
            f"checkpoint {path} cannot be read ({type(error).__name__}): it is truncated, corrupt "
            "or not a synergic checkpoint; restore it from a copy or start a new --output"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SynergicError(f"checkpoint {path} is not a synergic checkpoint of format {FORMAT}")
    return state


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(str(version).split(".")[:2])


def check_resumable_version(state: dict[str, Any], path: str | Path) -> None:
    """Refuse to continue training from a checkpoint of another synergic major.minor version.

    The training loop, the samplers and the augmentation may change between minor versions, so
    a run continued by another version would not be the run that was started. Patch releases
    (0.1.0 -> 0.1.3) never change what a run computes. Evaluating and predicting with an older
    checkpoint is always allowed: only the weights matter there.
    """
    from synergic import __version__

    saved = state.get("synergic_version")
    if saved is None:
        raise SynergicError(
            f"checkpoint {path} does not say which synergic version wrote it, so it cannot be "
            "resumed; start a new --output (synergic eval/predict can still use it)"
        )
    if _major_minor(saved) != _major_minor(__version__):
        raise SynergicError(
            f"checkpoint {path} was written by synergic {saved}, this is synergic {__version__}: "
            f"a run can only be resumed by the same major.minor version; install "
            f"synergic=={saved} to finish it, or start a new --output"
        )


def describe_state_dict_mismatch(expected: dict[str, Any], found: dict[str, Any]) -> str | None:
    """How ``found`` (a checkpoint's model weights) differs from ``expected`` (the model's own
    ``state_dict()``), in a few words; None when every key and shape matches."""
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    resized = [
        key for key in expected
        if key in found and hasattr(found[key], "shape")
        and tuple(found[key].shape) != tuple(expected[key].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} weights missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected weights (e.g. {unexpected[0]})")
    if resized:
        key = resized[0]
        parts.append(
            f"{len(resized)} weights of another shape (e.g. {key}: "
            f"{list(found[key].shape)} in the checkpoint, {list(expected[key].shape)} here)"
        )
    return ", ".join(parts) or None


def capture_rng_state() -> dict[str, Any]:
    """Global RNG states (dropout and anything else that does not take a generator)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def _to_tuples(value):
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value
