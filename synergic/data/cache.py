"""Decode and resize every image once, keep them as one uint8 tensor, and remember it on disk.

Decoding a JPEG costs far more than a training step on a small image, and the paper's recipe
resizes every image to a fixed size anyway. So a data set is decoded once into a ``uint8`` tensor
``[N, 3, S, S]`` (:func:`decode_images`), which training then indexes and augments on the device.
Every image goes through a :class:`~synergic.data.preprocess.Preprocessing`, the same path that
``synergic predict`` takes. :func:`cached_decode` also stores that tensor as
``<cache_dir>/<key>.npy`` so the next run loads it in a moment. The key changes whenever anything
that could change the pixels changes, so a stale cache is never read; see :func:`cache_key`.

A decoded set of :data:`MEMMAP_THRESHOLD_BYTES` or more (ISIC 2020 at 224 px is 5 GB, at 512 px
26 GB) never sits in memory: it is decoded chunk by chunk straight into a memory-mapped ``.npy``
file (:func:`decode_to_file`, with :func:`numpy.lib.format.open_memmap`) and used mapped, so the
operating system's page cache holds what fits and reads the rest from disk. Folds and carved
validation splits of such a set are :class:`ImageRows` views, not copies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import secrets
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

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
"""Decoded sets at least this large (bytes of uint8 ``[N, 3, S, S]``) are decoded into a
memory-mapped file and used mapped; smaller ones are decoded and kept in memory."""

WRITE_CHUNK_BYTES = 256 * 1024**2
"""While decoding into a file, the decoded pixels are handed to the file every this many bytes
and dropped from this process's resident memory (``madvise(MADV_DONTNEED)``): the peak resident
memory of a decode is about a chunk, whatever the size of the data set."""

AUTO_WORKERS_MIN_IMAGES = 256
"""``num_workers="auto"`` decodes fewer images than this in the calling process: starting
worker processes would take longer than decoding them."""

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each chunk of images."""

NumWorkers = int | Literal["auto"]


def available_cores() -> int:
    """The CPU cores this process may run on (``os.sched_getaffinity``: a container's or
    ``taskset``'s limit, not the machine's count), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_num_workers(num_workers: NumWorkers, count: int) -> int:
    """The decode worker processes for ``count`` images: ``num_workers`` itself, or for
    ``"auto"`` one per core of :func:`available_cores` (none, decoding in this process, on one
    core or for fewer than :data:`AUTO_WORKERS_MIN_IMAGES` images).

    Raises:
        SynergicError: ``num_workers`` is neither ``"auto"`` nor an integer >= 0.
    """
    if num_workers == "auto":
        cores = available_cores()
        return 0 if cores == 1 or count < AUTO_WORKERS_MIN_IMAGES else cores
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise SynergicError(f"num_workers must be an integer >= 0 or 'auto', got {num_workers!r}")
    return num_workers


def decoded_nbytes(count: int, image_size: int) -> int:
    """Bytes of ``count`` decoded images, uint8 ``[count, 3, image_size, image_size]``."""
    return count * 3 * image_size * image_size


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
    num_workers: NumWorkers = "auto",
    progress: bool | ProgressCallback = False,
    description: str = "",
) -> torch.Tensor:
    """Every image of ``dataset`` as RGB, ``S`` x ``S``: uint8 ``[N, 3, S, S]``, in memory.

    Each image goes through ``preprocessing`` (or ``Preprocessing(image_size, resample)``), see
    :func:`decode_one`. The aspect ratio is not kept, as in the paper. For a set too large for
    memory, :func:`decode_to_file` gives the same pixels in a memory-mapped file.

    Args:
        num_workers: decode in that many worker processes (0: in this process); ``"auto"``: one
            per core this process may use (see :func:`resolve_num_workers`).
        progress: ``True`` shows a progress bar; a callable is called as ``progress(done, total)``.
        description: the progress bar's label.

    Raises:
        SynergicError: invalid options, or an image that cannot be read (the file is named).
    """
    preprocessing = resolve_preprocessing(preprocessing, image_size=image_size, resample=resample)
    workers = resolve_num_workers(num_workers, len(dataset))
    size = preprocessing.image_size
    images = torch.empty((len(dataset), 3, size, size), dtype=torch.uint8)
    _decode_into(images, dataset, preprocessing, workers, progress, description)
    return images


def decode_to_file(
    dataset: Any,
    path: str | os.PathLike[str],
    *,
    preprocessing: Preprocessing | None = None,
    image_size: int | None = None,
    resample: str | None = None,
    num_workers: NumWorkers = "auto",
    progress: bool | ProgressCallback = False,
    description: str = "",
    keep: bool = True,
) -> torch.Tensor:
    """:func:`decode_images` straight into a memory-mapped ``.npy`` file, never whole in memory.

    The file (:func:`numpy.lib.format.open_memmap`, uint8 ``[N, 3, S, S]``) is written in chunks
    of :data:`WRITE_CHUNK_BYTES`, each dropped from resident memory once handed to the file.

    Args:
        path: with ``keep``, the file is written under a temporary name next to it, fsynced and
            renamed to ``path`` (an interrupted decode leaves nothing under ``path``), and the
            result maps ``path`` copy-on-write (writes to the tensor never reach the file).
            Without ``keep``, ``path`` is only the folder's scratch place: the file is deleted
            the moment it is created and lives, unnamed, as long as the returned tensor (its
            disk space returns when the process ends, even on a crash).
        others: as :func:`decode_images`.

    Returns:
        A uint8 ``[N, 3, S, S]`` tensor backed by the file.

    Raises:
        SynergicError: invalid options, or an image that cannot be read.
        OSError: the file cannot be created or written (disk full, read-only folder).
    """
    preprocessing = resolve_preprocessing(preprocessing, image_size=image_size, resample=resample)
    workers = resolve_num_workers(num_workers, len(dataset))
    size = preprocessing.image_size
    shape = (len(dataset), 3, size, size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_name(path, "tmp" if keep else "scratch")
    try:
        array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=shape)
        if not keep:
            temporary.unlink()  # the mapping keeps the file alive, unnamed, until it is closed
        release = _PageReleaser(array)
        _decode_into(
            torch.from_numpy(array), dataset, preprocessing, workers, progress, description,
            written=release,
        )
        if not keep:
            return torch.from_numpy(array)
        array.flush()
        del array, release
        _fsync_and_rename(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    loaded = _load_entry(path, shape, keep_mapped=True)
    if loaded is None:  # damaged while we wrote it: not something to retry silently
        raise OSError(f"the image cache entry {path} could not be read back")
    return loaded


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
        """The cached tensor when there is a valid entry, else decode it and store it.

        A set below :data:`MEMMAP_THRESHOLD_BYTES` is decoded in memory (:func:`decode_images`)
        and then stored; a larger one is decoded straight into its entry (:func:`decode_to_file`)
        and returned memory-mapped, as a larger entry that is already there is. A damaged entry
        is decoded again and replaced (with a warning). When the folder cannot be written
        (read-only, disk full) a small set is still returned, with a warning.
        ``decode_options`` go to the decoder (``num_workers``, ``progress``, ...).

        Raises:
            SynergicError: as the decoder; or a large set whose entry cannot be written (the
                folder, the size and what to do are named).
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
        nbytes = decoded_nbytes(len(dataset), size)
        if nbytes >= MEMMAP_THRESHOLD_BYTES:
            try:
                return decode_to_file(dataset, path, preprocessing=preprocessing, **decode_options)
            except OSError as error:
                raise SynergicError(
                    f"could not write the decoded images to the image cache {path} ({error}): "
                    f"they take {nbytes / 1024**3:.1f} GiB, too many to keep in memory; set "
                    "data.cache_dir (or SYNERGIC_CACHE_DIR) to a writable folder with room"
                ) from None
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
        for pattern in ("*.npy", ".*.tmp", ".*.scratch"):
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
    scratch_dir: str | os.PathLike[str] | None = None,
    **decode_options: Any,
) -> torch.Tensor:
    """:func:`decode_images`, through the disk cache in ``cache_dir`` when there is one.

    ``cache_dir=None`` turns the disk cache off (pass :func:`default_cache_dir` for the usual
    place). Data sets without files (see :func:`cacheable`) are always decoded. Without the
    cache, a set of :data:`MEMMAP_THRESHOLD_BYTES` or more is decoded into an unnamed file in
    ``scratch_dir`` (default :func:`default_cache_dir`), deleted when the tensor is (see
    :func:`decode_to_file` with ``keep=False``).
    """
    preprocessing = resolve_preprocessing(preprocessing, image_size=image_size, resample=resample)
    if cache_dir is None or not cacheable(dataset):
        if decoded_nbytes(len(dataset), preprocessing.image_size) < MEMMAP_THRESHOLD_BYTES:
            return decode_images(dataset, preprocessing=preprocessing, **decode_options)
        folder = Path(scratch_dir).expanduser() if scratch_dir is not None else default_cache_dir()
        try:
            return decode_to_file(
                dataset, folder / "decoded", preprocessing=preprocessing, keep=False,
                **decode_options,
            )
        except OSError as error:
            raise SynergicError(
                f"could not decode the images into a temporary file in {folder} ({error}): the "
                "set is too large to keep in memory; set data.cache_dir (or SYNERGIC_CACHE_DIR) "
                "to a writable folder with room"
            ) from None
    return ImageCache(cache_dir).get_or_decode(
        dataset, preprocessing=preprocessing, key_extra=key_extra, **decode_options
    )


class ImageRows:
    """The rows ``indices`` of a uint8 ``[N, 3, S, S]`` tensor, without copying them.

    A fold or a carved validation split of a memory-mapped data set (see :func:`select_rows`):
    indexing it reads only the rows asked for from the underlying tensor. It answers what the
    trainer and :func:`synergic.training.evaluation.predict` ask of an image tensor: ``len``,
    ``shape``, ``dtype``, ``device``, ``dim()``, ``numel()``, ``images[i]``, ``images[a:b]`` and
    ``images[index_tensor]`` (each a real tensor), and ``to(device)`` (the whole subset as a real
    tensor on ``device``, copied in chunks).

    Args:
        images: uint8 ``[N, 3, S, S]``.
        indices: the rows, ``[M]`` int64 (any order, repeats allowed).
    """

    def __init__(self, images: torch.Tensor, indices: torch.Tensor) -> None:
        self.images = images
        self.indices = torch.as_tensor(indices, dtype=torch.long)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.indices), *self.images.shape[1:]))

    @property
    def dtype(self) -> torch.dtype:
        return self.images.dtype

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return len(self.indices)

    def dim(self) -> int:
        return self.images.dim()

    def numel(self) -> int:
        return self.shape.numel()

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, torch.Tensor):
            key = key.to(self.indices.device)
        rows = self.indices[key]
        return self.images[rows] if rows.dim() else self.images[int(rows)]

    def to(self, device: torch.device | str, **options: Any) -> torch.Tensor:
        device = torch.device(device)
        out = torch.empty(self.shape, dtype=self.dtype, device=device)
        step = max(1, WRITE_CHUNK_BYTES // max(1, self.shape[1:].numel()))
        for start in range(0, len(self), step):
            out[start : start + step] = self[start : start + step].to(device, **options)
        return out

    def __repr__(self) -> str:
        return f"ImageRows({len(self)} of {len(self.images)} images, {tuple(self.shape[1:])})"


def select_rows(
    images: torch.Tensor | ImageRows, indices: Sequence[int]
) -> torch.Tensor | ImageRows:
    """The rows ``indices`` of decoded images ``[N, 3, S, S]``: a copy for a set held in memory
    (below :data:`MEMMAP_THRESHOLD_BYTES`, as before), an :class:`ImageRows` view for a larger,
    memory-mapped one, so that taking a fold does not read the whole file into memory."""
    index = torch.as_tensor(list(indices), dtype=torch.long)
    if isinstance(images, ImageRows):
        return ImageRows(images.images, images.indices[index])
    if images.numel() * images.element_size() >= MEMMAP_THRESHOLD_BYTES:
        return ImageRows(images, index)
    return images[index]


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


def _decode_into(
    target: torch.Tensor,
    dataset: Any,
    preprocessing: Preprocessing,
    workers: int,
    progress: bool | ProgressCallback,
    description: str,
    written: Callable[[int], None] | None = None,
) -> None:
    """Fill ``target`` (uint8 ``[N, 3, S, S]``) in order; ``written(n)`` once rows ``[0, n)``
    are all in."""
    total = len(dataset)
    with _progress_reporter(progress, total, description or "decoding images") as report:
        if workers == 0:
            for index in range(total):
                target[index] = decode_one(dataset, index, preprocessing)
                if (index + 1) % 32 == 0 or index + 1 == total:
                    report(index + 1)
                    if written is not None:
                        written(index + 1)
        else:
            # In order (the DataLoader keeps it), so everything before `done` is written.
            loader = DataLoader(
                _DecodeJob(dataset, preprocessing), batch_size=16, num_workers=workers,
                shuffle=False,
            )
            done = 0
            for indices, chunk in loader:
                target[indices] = chunk
                done += len(indices)
                report(done)
                if written is not None:
                    written(done)


class _PageReleaser:
    """Called with the rows written so far; every :data:`WRITE_CHUNK_BYTES` drops the pages of
    the finished rows from this process's resident set. They stay in the page cache (the kernel
    writes them to the file), so nothing is lost: this only keeps the decode's peak resident
    memory at a chunk instead of the whole file."""

    def __init__(self, array: np.memmap) -> None:
        self.row_bytes = int(np.prod(array.shape[1:], dtype=np.int64)) * array.itemsize
        self.rows = len(array)
        # numpy maps from the file's start rounded down to the allocation granularity; the
        # array's data begin `data_start` bytes into that mapping (numpy's private _mmap).
        self.mapping = getattr(array, "_mmap", None)
        self.data_start = array.offset % mmap.ALLOCATIONGRANULARITY
        self.released = 0  # bytes of the mapping already released

    def __call__(self, rows: int) -> None:
        if self.mapping is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        end = self.data_start + rows * self.row_bytes
        end -= end % mmap.PAGESIZE
        if end - self.released < WRITE_CHUNK_BYTES and rows < self.rows:
            return
        with contextlib.suppress(OSError, ValueError):
            self.mapping.madvise(mmap.MADV_DONTNEED, self.released, end - self.released)
            self.released = end


def _load_entry(
    path: Path, shape: tuple[int, ...], *, keep_mapped: bool = False
) -> torch.Tensor | None:
    """The tensor stored at ``path``; None (and a warning) when it is damaged or mis-shaped.
    Read into memory below :data:`MEMMAP_THRESHOLD_BYTES` (unless ``keep_mapped``), else mapped
    copy-on-write."""
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
    if array.nbytes < MEMMAP_THRESHOLD_BYTES and not keep_mapped:
        return torch.from_numpy(np.array(array))
    return torch.from_numpy(array)


def _temporary_name(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.{suffix}")


def _write_atomically(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_name(path, "tmp")
    try:
        with open(temporary, "wb") as file:
            np.save(file, array)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_and_rename(temporary: Path, path: Path) -> None:
    with open(temporary, "rb+") as file:
        os.fsync(file.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def _fsync_directory(folder: Path) -> None:
    with contextlib.suppress(OSError):  # make the rename itself durable; not possible everywhere
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
