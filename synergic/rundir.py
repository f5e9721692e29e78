"""The run directory: what a run writes, which recipe keys define the run, and when it may resume.

::

    recipe.yaml         the resolved recipe (paths absolute), as the run was last started
    preprocessing.json  how files became model inputs (image size, resize filter, JPEG decode
                        scale, mean, std): what ``predict`` and ``eval`` use
    run.json            the run's record: synergic version, data fingerprint, every change of
                        train.iterations (extensions), the selected checkpoint
    splits.csv          image,split,label: every image of train, val and test, as used
    log.csv             step, each loss term, learning rate, seconds per step
    tensorboard/        event files of the tensorboard logger (recipe key ``loggers``)
    checkpoints/        last.pt (resumable), best.pt (weights only: the best validation AP, when
                        there is a validation split); after the run, those of
                        train.keep_checkpoints (:func:`prune_checkpoints`)
    metrics.json        the selected model's test metrics, the data record, the selection
    predictions.csv     image,<class 0>,<class 1>,...: the selected model's probabilities
    test_labels.csv     image,label: the test set's ground truth, in the same order
    roc.png, pr.png     aggregate and each component, as the paper's Fig. 3 (one-vs-rest panels
                        for more than two classes)
    calibration.png     reliability diagram (binary tasks)

A run's identity is its recipe less the keys in :data:`RESULT_NEUTRAL_KEYS` (where files live,
how fast and how often things happen), plus the data it read (:func:`data_fingerprint`).
Resuming refuses any other change, naming the keys; ``train.iterations`` may change when the
learning-rate schedule does not depend on it (:func:`check_resume`), and each change is recorded in
``run.json``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from synergic.errors import SynergicError
from synergic.folders import KIND_NAMES, folder_kind
from synergic.recipe import Recipe

RESULT_NEUTRAL_KEYS: tuple[str, ...] = (
    "name",
    "data.download",
    "data.cache",
    "data.cache_dir",
    "train.device",
    "train.fuse_components",
    "train.num_workers",
    "train.eval_batch_size",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.log_every",
    "train.n_bootstrap",
    "loggers",
)
"""Recipe keys that change where files live or how fast and how often things happen, never what a
run computes (``train.n_bootstrap`` only changes how finely the intervals around its results are
estimated; ``loggers`` only where the same values are also sent; ``train.device`` and
``train.fuse_components`` change which kernels compute the same mathematics, so results agree up to
float reassociation). Two runs whose recipes differ only in these are the same experiment (sweeps, reports),
and a run may be resumed with them changed."""

RELOCATABLE_KEYS: tuple[str, ...] = ("data.root",)
"""Keys that say where the data is. The data itself is identified by its fingerprint (ids and
labels of every split), so a run may be resumed or re-evaluated with its data moved."""

IDENTITY_SECTIONS: tuple[str, ...] = ("seed", "data", "model", "train")

SCHEDULES_DEPENDING_ON_TOTAL = frozenset({"cosine"})
"""Learning-rate schedules whose value at a step depends on ``train.iterations``: changing the total
would change the rate of steps already taken."""

RESULT_FILES = (
    "metrics.json", "predictions.csv", "test_labels.csv", "roc.png", "pr.png", "calibration.png",
)
"""Files that exist only once a run has finished: removed when a run is resumed or extended."""

RUN_RECORD = "run.json"

KEEP_CHECKPOINTS_SINGLE_RUN = "all"
"""What ``train.keep_checkpoints: auto`` keeps after a single run (``synergic run``): ``last.pt``,
so the run can be extended or resumed, and ``best.pt``, so either model can be evaluated."""

KEEP_CHECKPOINTS_MANY_RUNS = "selected"
"""What ``train.keep_checkpoints: auto`` keeps after each run of a sweep (and of any command that
trains many runs of one recipe): only the reported model's checkpoint, which ``eval`` and
``predict`` use; such runs are compared, rarely extended."""
SPLITS_FILE = "splits.csv"


# -- state and claiming -----------------------------------------------------------------------


def run_directory_state(run_dir: Path) -> str:
    """``"empty"``, ``"run"`` (holds a synergic run) or ``"other"`` (holds something else)."""
    run_dir = Path(run_dir)
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "empty"
    if (run_dir / "recipe.yaml").exists() or (run_dir / "checkpoints").exists():
        return "run"
    return "other"


def claim_run_directory(
    run_dir: Path, *, resume: bool, overwrite: bool, delete: bool = True
) -> None:
    """Make sure ``run_dir`` may receive a new run (or is resumed); ``overwrite`` deletes a run
    (with ``delete=False`` only checks that it may: the run is then deleted by a second call once
    every other check has passed, so a mistake elsewhere never costs the old run).

    Raises:
        SynergicError: the folder holds a run (without ``overwrite``), a sweep, a
            cross-validation or a folder of runs (named, see :func:`synergic.folders.folder_kind`),
            or other files.
    """
    run_dir = Path(run_dir)
    state = run_directory_state(run_dir)
    if state == "empty":
        return
    if state == "other":
        # A sweep or cross-validation folder is never one run, not even to --resume or --overwrite.
        kind = folder_kind(run_dir)
        if kind in ("sweep", "cv_sweep", "cv", "runs"):
            raise SynergicError(
                f"output directory {run_dir} holds a {KIND_NAMES[kind]}: use another --output"
            )
    if resume:
        return
    if not overwrite:
        what = "another run" if state == "run" else "other files"
        raise SynergicError(
            f"output directory {run_dir} already holds {what}: use --resume to continue it, "
            "--overwrite to replace it, or another --output"
        )
    if state == "other":
        raise SynergicError(
            f"output directory {run_dir} holds files that are not a synergic run: "
            "--overwrite only replaces runs; choose another --output"
        )
    if delete:
        shutil.rmtree(run_dir)


# -- identity -----------------------------------------------------------------------------------


def _flat(recipe: Recipe) -> dict[str, Any]:
    from synergic.recipe.loading import _flatten

    return {".".join(path): value for path, value in _flatten(recipe.model_dump(mode="json")).items()}


def identity_differences(
    saved: Recipe, wanted: Recipe, *, also_ignore: Sequence[str] = ()
) -> list[str]:
    """``key (old -> new)`` for every result-affecting key whose value differs, in schema order.

    Result-neutral keys (:data:`RESULT_NEUTRAL_KEYS`), relocatable ones (:data:`RELOCATABLE_KEYS`)
    and ``also_ignore`` are left out.
    """
    from synergic.recipe import recipe_differences

    ignore = (*RESULT_NEUTRAL_KEYS, *RELOCATABLE_KEYS, *also_ignore)
    keys = recipe_differences(saved, wanted, keys=IDENTITY_SECTIONS, ignore=ignore)
    old, new = _flat(saved), _flat(wanted)

    # Recipes leave out keys and sections while they are off (train.tta: none, train.ema), so
    # a key missing from one side is at its default. A whole section switched on or off differs
    # in all its keys: only those away from their defaults say what the user set.
    shown: list[str] = []
    sections: set[str] = set()
    for key in keys:
        section = _section_unset_in_one(key, old, new)
        if section is None:
            shown.append(key)
        elif section not in sections:
            sections.add(section)
            present = new if any(k.startswith(section + ".") for k in new) else old
            inside = [k for k in keys if k.startswith(section + ".")]
            shown.extend([k for k in inside if not _is_default(k, present.get(k))] or inside)

    def show(flat: dict[str, Any], key: str) -> str:
        if key in flat:
            return json.dumps(flat[key])
        default = _default(key)
        if default is not _NO_DEFAULT and _section_unset_in_one(key, old, new) is None:
            return json.dumps(default)
        return "unset"

    return [f"{key} ({show(old, key)} -> {show(new, key)})" for key in shown]


_NO_DEFAULT = object()


def _default(key: str) -> Any:
    """The schema's default of the dotted recipe ``key`` as JSON values, or ``_NO_DEFAULT``
    (a required key, or one inside a free-form ``options`` mapping)."""
    from pydantic import BaseModel
    from pydantic_core import to_jsonable_python

    model: Any = Recipe
    *parents, leaf = key.split(".")
    for part in parents:
        field = model.model_fields.get(part)
        model = field.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return _NO_DEFAULT
    field = model.model_fields.get(leaf)
    if field is None or field.is_required():
        return _NO_DEFAULT
    return to_jsonable_python(field.get_default(call_default_factory=True))


def _is_default(key: str, value: Any) -> bool:
    default = _default(key)
    return default is not _NO_DEFAULT and json.dumps(default) == json.dumps(value)


def _section_unset_in_one(key: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """The outermost section above ``key`` that one flattened recipe lacks entirely while the
    other has it (``train.ema`` for ``train.ema.decay``), or None."""
    parts = key.split(".")
    for depth in range(1, len(parts)):
        section = ".".join(parts[:depth])
        in_old = any(k.startswith(section + ".") for k in old)
        in_new = any(k.startswith(section + ".") for k in new)
        if in_old != in_new:
            return section
    return None


def identity_hash(recipe: Recipe) -> str:
    """SHA-256 (hex) of the recipe's result-affecting keys (everything but the neutral and
    relocatable keys, and ``train.iterations``, which a run may extend): equal for two recipes
    exactly when :func:`identity_differences` (less ``train.iterations``) is empty."""
    from synergic.recipe import recipe_hash

    return recipe_hash(
        recipe, keys=IDENTITY_SECTIONS,
        ignore=(*RESULT_NEUTRAL_KEYS, *RELOCATABLE_KEYS, "train.iterations"),
    )


def check_resume(saved: Recipe, wanted: Recipe, *, run_dir: Path, step: int) -> None:
    """Refuse to resume ``run_dir`` (at ``step``) with ``wanted`` when it would not continue the
    same run as ``saved`` (the recipe of its last checkpoint).

    Allowed: changes of :data:`RESULT_NEUTRAL_KEYS` and :data:`RELOCATABLE_KEYS`, and a change of
    ``train.iterations`` to ``step`` or more when the schedule does not depend on the total.

    Raises:
        SynergicError: one line naming the changed keys with their old and new values.
    """
    changed = identity_differences(saved, wanted, also_ignore=("train.iterations",))
    if changed:
        raise SynergicError(
            f"cannot resume {run_dir}: the recipe differs from the run's in "
            f"{', '.join(changed)}; the weights would come from two recipes. Undo the change, "
            "or start a new run with --output"
        )
    old_total, new_total = saved.train.iterations, wanted.train.iterations
    schedule = saved.train.lr_schedule.name
    if new_total != old_total and schedule in SCHEDULES_DEPENDING_ON_TOTAL:
        raise SynergicError(
            f"cannot resume {run_dir} with train.iterations={new_total}: its {schedule} "
            f"learning-rate schedule depends on the total ({old_total}), so the steps already "
            "taken would not belong to the new run; start a new run instead"
        )
    if step > new_total:
        raise SynergicError(
            f"cannot resume {run_dir}: it is already at step {step}, beyond "
            f"train.iterations={new_total}; set train.iterations to {step} or more"
        )


# -- paths --------------------------------------------------------------------------------------


def absolute_paths(recipe: Recipe, base: Path | None = None) -> Recipe:
    """``recipe`` with its file paths (data.root, data.cache_dir, model.backbone.weights) made
    absolute against ``base`` (default: the current directory), ``~`` expanded, so that the run
    directory can be used from anywhere."""
    base = Path.cwd() if base is None else Path(base)

    def absolute(value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        # abspath also folds "a/../b", as a shell would print it.
        return os.path.abspath(path if path.is_absolute() else base / path)

    data = recipe.data.model_copy(
        update={"root": absolute(recipe.data.root), "cache_dir": absolute(recipe.data.cache_dir)}
    )
    backbone = recipe.model.backbone.model_copy(
        update={"weights": absolute(recipe.model.backbone.weights)}
    )
    model = recipe.model.model_copy(update={"backbone": backbone})
    return recipe.model_copy(update={"data": data, "model": model})


def apply_neutral_overrides(recipe: Recipe, overrides: Sequence[str], *, source: str) -> Recipe:
    """``recipe`` with ``--set KEY=VALUE`` overrides applied, where every KEY must be
    result-neutral or relocatable (``data.root``, ``train.device``, ...): re-evaluating a run
    must not change what it computes.

    Raises:
        SynergicError: an override of a result-affecting key, or a malformed one.
    """
    from synergic.recipe.loading import recipe_from_dict

    if not overrides:
        return recipe
    allowed = (*RESULT_NEUTRAL_KEYS, *RELOCATABLE_KEYS)
    for override in overrides:
        key = override.split("=", 1)[0].strip()
        if key == "train.tta":  # changes the test metrics, not the model: eval/predict --tta
            raise SynergicError(
                "--set train.tta: the run's test-time augmentation is part of its results; "
                "evaluate with another one with --tta none|flips|d4 instead"
            )
        if not any(key == a or key.startswith(a + ".") for a in allowed):
            raise SynergicError(
                f"--set {key}: only keys that do not change what a run computes can be set here "
                f"({', '.join(allowed)}); to change {key}, train a new run"
            )
    updated = recipe_from_dict(recipe.model_dump(mode="json"), overrides, source=source)
    return absolute_paths(updated)


def resolve_checkpoint(run_dir: Path, checkpoint: str) -> str:
    """``"best"`` or ``"last"`` for ``checkpoint``; ``"selected"`` is the one the run reports
    (``metrics.json``'s ``selected``; ``last`` for runs that do not record it)."""
    if checkpoint != "selected":
        return checkpoint
    record = read_run_record(run_dir)
    selected = record.get("selected") or {}
    if not selected:
        path = Path(run_dir) / "metrics.json"
        try:
            selected = json.loads(path.read_text(encoding="utf-8")).get("selected") or {}
        except (OSError, ValueError):
            selected = {}
    return selected.get("checkpoint", "last")


# -- checkpoints kept after a run ----------------------------------------------------------------


def with_keep_checkpoints_default(recipe: Recipe, default: str) -> Recipe:
    """``recipe`` with ``train.keep_checkpoints: auto`` replaced by ``default`` (e.g.
    :data:`KEEP_CHECKPOINTS_MANY_RUNS` for a sweep's runs); an explicit value is kept."""
    if recipe.train.keep_checkpoints != "auto":
        return recipe
    train = recipe.train.model_copy(update={"keep_checkpoints": default})
    return recipe.model_copy(update={"train": train})


def kept_checkpoints(keep: str, selected: str) -> tuple[str, ...]:
    """The checkpoint names (``"last"``, ``"best"``) that ``train.keep_checkpoints`` = ``keep``
    keeps after a finished run whose reported model is ``selected`` (``"best"`` or ``"last"``);
    ``auto`` is :data:`KEEP_CHECKPOINTS_SINGLE_RUN`."""
    keep = KEEP_CHECKPOINTS_SINGLE_RUN if keep == "auto" else keep
    if keep == "all":
        return ("last", "best")
    if keep == "selected":
        return (selected,)
    if keep == "none":
        return ()
    raise ValueError(f"keep_checkpoints must be auto, all, selected or none, got {keep!r}")


def prune_checkpoints(run_dir: Path, keep: str, selected: str) -> dict[str, Any]:
    """After a finished run, delete the checkpoints that ``keep`` (``train.keep_checkpoints``)
    does not keep (see :func:`kept_checkpoints`), and record in ``run.json`` under
    ``"checkpoints"``: ``{"keep": keep, "kept": [...], "removed": [...]}`` (names such as
    ``"last"``; ``kept`` lists only files that exist). Call it only once the results are written:
    while a run trains, ``last.pt`` is what it resumes from. Returns that record.
    """
    folder = Path(run_dir) / "checkpoints"
    wanted = kept_checkpoints(keep, selected)
    kept, removed = [], []
    for name in ("last", "best"):
        path = folder / f"{name}.pt"
        if not path.is_file():
            continue
        if name in wanted:
            kept.append(name)
        else:
            path.unlink()
            removed.append(name)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    record = {"keep": keep, "kept": kept, "removed": removed}
    update_run_record(run_dir, checkpoints=record)
    return record


def checkpoint_not_kept(run_dir: Path, name: str) -> str | None:
    """Why ``checkpoints/<name>.pt`` is missing, when ``train.keep_checkpoints`` removed it after
    the run finished: one line naming the setting, the checkpoint that exists and what to do;
    None when ``run.json`` does not record its removal."""
    record = read_run_record(run_dir).get("checkpoints") or {}
    if name not in (record.get("removed") or []):
        return None
    folder = Path(run_dir) / "checkpoints"
    others = [k for k in record.get("kept") or [] if (folder / f"{k}.pt").is_file()]
    if others:
        what_to_do = f"{folder / others[0]}.pt exists: use --checkpoint {others[0]}"
    else:
        what_to_do = (
            "no checkpoint of this run exists (its results stay in metrics.json and "
            "predictions.csv); to use the model, train the recipe again with "
            "train.keep_checkpoints: all or selected"
        )
    return (
        f"{folder / name}.pt was not kept: train.keep_checkpoints is "
        f"'{record.get('keep')}', which removed it after the run finished; {what_to_do}"
    )


def check_last_checkpoint_kept(run_dir: Path) -> None:
    """Refuse to resume or extend a finished run whose ``last.pt`` ``train.keep_checkpoints``
    removed: without it the run would silently start again from step 0.

    Raises:
        SynergicError: one line naming the setting and what to do.
    """
    record = read_run_record(run_dir).get("checkpoints") or {}
    if "last" not in (record.get("removed") or []):
        return
    raise SynergicError(
        f"cannot resume {run_dir}: its checkpoints/last.pt (the optimiser state training continues "
        f"from) was not kept, as train.keep_checkpoints is '{record.get('keep')}'; to train "
        "longer, start a new run with --output and train.keep_checkpoints: all"
    )


# -- the data record ----------------------------------------------------------------------------


def data_fingerprint(splits: Mapping[str, Sequence[tuple[str, str]]]) -> str:
    """SHA-256 (hex) of the sorted ``(split, image id, class name)`` rows of every split.

    Two runs with the same fingerprint read the same images under the same labels in the same
    splits (file contents are not hashed: the decode cache follows those).
    """
    rows = sorted(
        (split, str(image_id), str(label))
        for split, pairs in splits.items()
        for image_id, label in pairs
    )
    encoded = json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()


def data_record(
    classes: Sequence[str], splits: Mapping[str, tuple[Sequence[str], Sequence[int]]]
) -> dict[str, Any]:
    """``{"train": {class: count, ...}, "validation": {...}, "test": {...}, "fingerprint": ...}``
    for ``splits`` mapping a split name (``train``, ``val``, ``test``) to ``(ids, labels)``."""
    named = {
        split: [(image_id, classes[int(label)]) for image_id, label in zip(ids, labels)]
        for split, (ids, labels) in splits.items()
    }
    record: dict[str, Any] = {}
    for split, pairs in named.items():
        counts = dict.fromkeys(classes, 0)
        for _, label in pairs:
            counts[label] += 1
        record["validation" if split == "val" else split] = counts
    record["fingerprint"] = data_fingerprint(named)
    return record


FINGERPRINT_CHUNK_BYTES = 64 * 1024**2
""":func:`pixel_fingerprints` reads the images this many bytes at a time."""


def pixel_fingerprints(images: Mapping[str, Any]) -> dict[str, str | None]:
    """SHA-256 (hex) of each split's decoded images, uint8 ``[N, 3, S, S]`` as the model sees them
    (after decoding and resizing, in the split's order); None for a split that is absent.

    :func:`data_fingerprint` covers the names and labels; this covers the content, so two copies
    of a data set whose files share names but not pixels are told apart. Equal pixels give equal
    hashes on every machine (decoding is deterministic; the resize is Pillow's).
    """
    hashes: dict[str, str | None] = {}
    for split, tensor in images.items():
        if tensor is None:
            hashes[split] = None
            continue
        digest = hashlib.sha256(f"{tuple(tensor.shape)}|".encode())
        # In chunks: a memory-mapped set (or a view of one) is never copied whole.
        rows = max(1, FINGERPRINT_CHUNK_BYTES // max(1, tensor.shape[1:].numel()))
        for start in range(0, len(tensor), rows):
            chunk = tensor[start : start + rows].contiguous().numpy()
            digest.update(memoryview(chunk).cast("B"))
        hashes[split] = digest.hexdigest()
    return hashes


def describe_data(record: Mapping[str, Any]) -> str:
    """One line: images per class in each split, and the fingerprint's first 12 characters."""
    parts = []
    for split in ("train", "validation", "test"):
        counts = record.get(split)
        if counts:
            inner = ", ".join(f"{name} {count}" for name, count in counts.items())
            parts.append(f"{split} {sum(counts.values())} ({inner})")
    return "; ".join(parts) + f"; fingerprint {str(record.get('fingerprint', ''))[:12]}"


def write_splits(
    run_dir: Path, classes: Sequence[str],
    splits: Mapping[str, tuple[Sequence[str], Sequence[int]]],
) -> None:
    """``splits.csv``: ``image,split,label`` for every image of every split, in split order."""
    buffer = io.StringIO(newline="")
    from synergic.data.names import CsvWriter

    writer = CsvWriter(buffer)
    writer.writerow(["image", "split", "label"])
    for split, (ids, labels) in splits.items():
        for image_id, label in zip(ids, labels):
            writer.writerow([image_id, split, classes[int(label)]])
    write_text_atomically(Path(run_dir) / SPLITS_FILE, buffer.getvalue())


def read_splits(run_dir: Path) -> list[tuple[str, str, str]]:
    """The ``(image, split, label)`` rows of ``run_dir/splits.csv``."""
    path = Path(run_dir) / SPLITS_FILE
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        return [(row[0], row[1], row[2]) for row in reader if row]


# -- run.json -------------------------------------------------------------------------------------


def read_run_record(run_dir: Path) -> dict[str, Any]:
    """``run.json`` as a dict (empty for runs written before it existed)."""
    path = Path(run_dir) / RUN_RECORD
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SynergicError(f"{path} is damaged ({error}); delete it to continue") from None


def update_run_record(run_dir: Path, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into ``run.json`` (written atomically) and return the new record."""
    record = read_run_record(run_dir)
    record.update(changes)
    write_text_atomically(Path(run_dir) / RUN_RECORD, json.dumps(json_safe(record), indent=2) + "\n")
    return record


def record_iterations(run_dir: Path, *, step: int, old_total: int | None, new_total: int) -> None:
    """Note in ``run.json`` that the run (at ``step``) now trains to ``new_total`` iterations."""
    record = read_run_record(run_dir)
    history = list(record.get("iterations_history", []))
    if old_total is None or not history:
        history.append({"iterations": old_total or new_total, "from_step": 0, "at": _now()})
    if old_total is not None and old_total != new_total:
        history.append({"iterations": new_total, "from_step": step, "at": _now()})
    update_run_record(run_dir, iterations_history=history)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- writing ------------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """NaN and infinities become null: metrics.json is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_text_atomically(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`~synergic.training.checkpoint.atomic_write`)."""
    from synergic.training.checkpoint import atomic_write

    atomic_write(Path(path), lambda handle: handle.write(text.encode("utf-8")))
