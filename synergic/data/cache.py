"""Decode and resize every image once, keep them as one uint8 tensor, and remember it on disk.

Decoding a JPEG costs far more than a training step on a small image, and the paper's recipe
resizes every image to a fixed size anyway. So a data set is decoded once into a ``uint8`` tensor
``[N, 3, S, S]`` (:func:`decode_images`), which training then indexes and augments on the device.
Every image goes through a :class:`~synergic.data.preprocess.Preprocessing`, the same path that
``synergic predict`` takes. :func:`cached_decode` also stores that tensor as
``<cache_dir>/<key>.npy`` so the next run loads it in a moment. The key changes whenever anything
that could change the pixels changes, so a stale cache is never read; see :func:`cache_key`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from synergic.data.preprocess import Preprocessing
from synergic.errors import SynergicError

CACHE_FORMAT = 1
"""Bump when the entries' file layout changes: every older entry is then ignored. (A change of
the pixels themselves bumps :data:`synergic.data.preprocess.PREPROCESSING_FORMAT`, also keyed.)"""

MEMMAP_THRESHOLD_BYTES = 2 * 1024**3
"""Cached tensors at least this large stay memory-mapped instead of being read into memory."""

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each chunk of images."""


def default_cache_dir() -> Path:
    """Where decoded images are kept: ``$SYNERGIC_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/synergic/images``, else ``~/.cache/synergic/images``. Nothing is created."""
    configured = os.environ.get("SYNERGIC_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "synergic" / "images"


def resolve_preprocessing(
    preprocessing: Preprocessing | None = None,
    *,
    image_size: int | None = None,
    resample: str | None = None,
) -> Preprocessing:
    """``preprocessing``, or ``Preprocessing(image_size, resample)`` (its defaults for what is
    None) when only those are given: the shorthand every function of this module accepts.

    Raises:
        SynergicError: both or neither given, or invalid values.
    """
    if preprocessing is not None:
        if image_size is not None or resample is not None:
            raise SynergicError(
                "give either preprocessing or image_size/resample, not both: the preprocessing "
                "already holds its image size and resize filter"
            )
        if not isinstance(preprocessing, Preprocessing):
            raise SynergicError(
                f"preprocessing must be a synergic.data.preprocess.Preprocessing, got "
                f"{type(preprocessing).__name__}"
            )
        return preprocessing
    if image_size is None:
        raise SynergicError("give the preprocessing (or at least image_size) to decode images")
    options = {"resample": resample} if resample is not None else {}
    return Preprocessing(image_size=image_size, **options)


def decode_images(
    dataset: Any,
    *,
    preprocessing: Preprocessing | None = None,
    image_size: int | None = None,
    resample: str | None = None,
    num_workers: int = 0,
    progress: bool | ProgressCallback = False,
    description: str = "",
) -> torch.Tensor:
    """Every image of ``dataset`` as RGB, ``S`` x ``S``: uint8 ``[N, 3, S, S]``.

    Each image goes through ``preprocessing`` (or ``Preprocessing(image_size, resample)``), see
    :func:`decode_one`. The aspect ratio is not kept, as in the paper.

    Args:
        num_workers: decode in that many worker processes (0: in this process).
        progress: ``True`` shows a progress bar; a callable is called as ``progress(done, total)``.
        description: the progress bar's label.

    Raises:
        SynergicError: invalid options, or an image that cannot be read (the file is named).
    """
    preprocessing = resolve_preprocessing(preprocessing, image_size=image_size, resample=resample)
    image_size = preprocessing.image_size
    if not isinstance(num_workers, int) or num_workers < 0:
        raise SynergicError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    total = len(dataset)
    images = torch.empty((total, 3, image_size, image_size), dtype=torch.uint8)
    with _progress_reporter(progress, total, description or "decoding images") as report:
        if num_workers == 0:
            for index in range(total):
                images[index] = decode_one(dataset, index, preprocessing)
                if (index + 1) % 32 == 0 or index + 1 == total:
                    report(index + 1)
        else:
            loader = DataLoader(
                _DecodeJob(dataset, preprocessing),
                batch_size=16,
                num_workers=num_workers,
                shuffle=False,
            )
            done = 0
            for indices, chunk in loader:
                images[indices] = chunk
                done += len(indices)
                report(done)
    return images


def decode_one(dataset: Any, index: int, preprocessing: Preprocessing) -> torch.Tensor:
    """Image ``index`` of ``dataset`` as uint8 ``[3, S, S]``, ``S = preprocessing.image_size``.

    A data set with a ``load_resized(index, preprocessing)`` method decodes the image itself
    (the built-in file data sets: ``preprocessing.load(path)``, large JPEGs at reduced scale);
    otherwise ``dataset[index][0]``, a PIL image or a uint8 ``[3, H, W]`` tensor, goes through
    :meth:`Preprocessing.resize <synergic.data.preprocess.Preprocessing.resize>`.
    """
    load_resized = getattr(dataset, "load_resized", None)
    if callable(load_resized):
        image = load_resized(index, preprocessing)
    else:
        item = dataset[index]
        image = item[0] if isinstance(item, (tuple, list)) else item
    return preprocessing.resize(image, what=f"{type(dataset).__name__}[{index}]")


def cacheable(dataset: Any) -> bool:
    """Whether ``dataset`` can use the disk cache: it must list its files in ``dataset.paths``.

    A data set generated in memory (no ``paths``, e.g. ``synthetic_lesions``) is cheap to rebuild
    and has no files whose changes the cache key could follow, so it is decoded every time.
    """
    return getattr(dataset, "paths", None) is not None


def cache_key(
    dataset: Any,
    *,
    preprocessing: Preprocessing | None = None,
    image_size: int | None = None,
    resample: str | None = None,
    key_extra: str = "",
) -> str:
    """The sha256 (hex) that names ``dataset``'s cache entry.

    It covers the data set's class, its ``ids`` and ``labels``, the size and modification time
    (ns) of every file in ``dataset.paths``, every setting of the preprocessing that changes
    pixels (:meth:`~synergic.data.preprocess.Preprocessing.pixel_settings`: image size, resize
    filter, JPEG decode scale, preprocessing format; not mean/std), ``key_extra`` and
    :data:`CACHE_FORMAT`: touching, replacing, adding or removing a file, or changing an option,
    gives a new key. Paths themselves are left out, so moving a data set folder keeps its cache.
    """
    preprocessing = resolve_preprocessing(preprocessing, image_size=image_size, resample=resample)
    paths = [Path(p) for p in getattr(dataset, "paths", None) or []]
    files = []
    for path in paths:
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise SynergicError(f"image file not found: {path}") from None
        files.append((stat.st_size, stat.st_mtime_ns))
    ids = getattr(dataset, "ids", None)
    labels = getattr(dataset, "labels", None)
    description = {
        "format": CACHE_FORMAT,
        "class": f"{type(dataset).__module__}.{type(dataset).__qualname__}",
        "count": len(dataset),
        "ids": [str(i) for i in ids] if ids is not None else None,
        "labels": [int(label) for label in labels] if labels is not None else None,
        "files": files,
        "preprocessing": preprocessing.pixel_settings(),
        "extra": key_extra,
    }
    encoded = json.dumps(description, separators=(",", ":"), sort_keys=True).encode()
    return hashlib.sha256(encoded).hexdigest()


class ImageCache:
    """A folder of decoded data sets, one ``<key>.npy`` file (uint8 ``[N, 3, S, S]``) each.

    Entries are written atomically (a temporary file, fsync, rename), so an interrupted run never
    leaves a half-written entry under its final name, and processes that decode the same data set
    at the same time (one per GPU) do not corrupt each other.

    Args:
        cache_dir: the folder; ``None`` means :func:`default_cache_dir`.
    """

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.cache_dir = (
            Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        )

    def path_for(
        self,
        dataset: Any,
        *,
        preprocessing: Preprocessing | None = None,
        image_size: int | None = None,
        resample: str | None = None,
        key_extra: str = "",
    ) -> Path:
        """The file that holds (or would hold) ``dataset`` decoded with ``preprocessing``."""
        key = cache_key(
            dataset, preprocessing=preprocessing, image_size=image_size, resample=resample,
            key_extra=key_extra,
        )
        return self.cache_dir / f"{key}.npy"

    def get_or_decode(
        self,
        dataset: Any,
        *,
        preprocessing: Preprocessing | None = None,
        image_size: int | None = None,
        resample: str | None = None,
        key_extra: str = "",
        **decode_options: Any,
    ) -> torch.Tensor:
        """The cached tensor when there is a valid entry, else :func:`decode_images` and store it.

        A damaged entry is decoded again and replaced (with a warning). When the folder cannot be
        written (read-only, disk full) the images are still returned, with a warning.
        ``decode_options`` go to :func:`decode_images` (``num_workers``, ``progress``, ...).
        """
        preprocessing = resolve_preprocessing(
            preprocessing, image_size=image_size, resample=resample
        )
        size = preprocessing.image_size
        path = self.path_for(dataset, preprocessing=preprocessing, key_extra=key_extra)
        if path.exists():
            loaded = _load_entry(path, (len(dataset), 3, size, size))
            if loaded is not None:
                return loaded
        images = decode_images(dataset, preprocessing=preprocessing, **decode_options)
        try:
            _write_atomically(path, images.numpy())
        except OSError as error:
            warnings.warn(
                f"could not write the image cache {path}: {error}; continuing without it "
                "(set SYNERGIC_CACHE_DIR to a writable folder)",
                stacklevel=2,
            )
        return images

    def clear(self) -> int:
        """Delete every entry (and leftover temporary file) in the folder; returns how many."""
        removed = 0
        if not self.cache_dir.is_dir():
            return 0
        for pattern in ("*.npy", ".*.tmp"):
            for path in self.cache_dir.glob(pattern):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def __repr__(self) -> str:
        return f"ImageCache({str(self.cache_dir)!r})"


def cached_decode(
    dataset: Any,
    *,
    preprocessing: Preprocessing | None = None,
    image_size: int | None = None,
    resample: str | None = None,
    cache_dir: str | os.PathLike[str] | None,
    key_extra: str = "",
    **decode_options: Any,
) -> torch.Tensor:
    """:func:`decode_images`, through the disk cache in ``cache_dir`` when there is one.

    ``cache_dir=None`` turns the disk cache off (pass :func:`default_cache_dir` for the usual
    place). Data sets without files (see :func:`cacheable`) are always decoded.
    """
    preprocessing = resolve_preprocessing(preprocessing, image_size=image_size, resample=resample)
    if cache_dir is None or not cacheable(dataset):
        return decode_images(dataset, preprocessing=preprocessing, **decode_options)
    return ImageCache(cache_dir).get_or_decode(
        dataset, preprocessing=preprocessing, key_extra=key_extra, **decode_options
    )


# --- internals ---------------------------------------------------------------------------------


class _DecodeJob(TorchDataset):
    """Index dataset for the worker processes: item ``i`` is ``(i, decoded image i)``."""

    def __init__(self, dataset: Any, preprocessing: Preprocessing) -> None:
        self.dataset = dataset
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return index, decode_one(self.dataset, index, self.preprocessing)


@contextlib.contextmanager
def _progress_reporter(
    progress: bool | ProgressCallback, total: int, description: str
) -> Iterator[Callable[[int], None]]:
    if callable(progress):
        yield lambda done: progress(done, total)
    elif progress:
        from rich.console import Console
        from rich.progress import Progress

        # On stderr, and only in a terminal: stdout may be a file a script reads (--json), and a
        # transient bar in a file leaves nothing but blank lines.
        console = Console(stderr=True)
        with Progress(transient=True, console=console, disable=not console.is_terminal) as bar:
            task = bar.add_task(description, total=total)
            yield lambda done: bar.update(task, completed=done)
    else:
        yield lambda done: None


def _load_entry(path: Path, shape: tuple[int, ...]) -> torch.Tensor | None:
    """The tensor stored at ``path``; None (and a warning) when it is damaged or mis-shaped."""
    try:
        # Copy-on-write: a large entry stays mapped, and writes to the tensor never reach the file.
        array = np.load(path, mmap_mode="c")
    except (OSError, ValueError) as error:
        warnings.warn(
            f"ignoring a damaged image cache entry {path} ({error}); decoding again", stacklevel=3
        )
        return None
    if array.shape != shape or array.dtype != np.uint8:
        warnings.warn(
            f"ignoring image cache entry {path}: it holds {array.dtype} {array.shape}, "
            f"expected uint8 {shape}; "
            "decoding again",
            stacklevel=3,
        )
        return None
    if array.nbytes < MEMMAP_THRESHOLD_BYTES:
        return torch.from_numpy(np.array(array))
    return torch.from_numpy(array)


def _write_atomically(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "wb") as file:
            np.save(file, array)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable; not possible everywhere
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
