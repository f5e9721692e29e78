"""MedMNIST 2-D data sets read straight from their ``.npz`` files, one split at a time.

A MedMNIST file is a NumPy ``.npz`` archive holding ``train_images``, ``train_labels``,
``val_images``, ``val_labels``, ``test_images`` and ``test_labels``: images uint8 ``[N, H, W]``
(grey) or ``[N, H, W, 3]`` (RGB), labels integers ``[N, 1]``.
"""

from __future__ import annotations

import operator
import os
import re
import shutil
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from synergic.errors import SynergicError, did_you_mean

from synergic_medmnist.download import download as download_file
from synergic_medmnist.flags import FLAGS, SIZES, UNSUPPORTED_FLAGS, file_name, official_url

SPLITS = ("train", "val", "test")
OPTIONS = ("flag", "size", "download", "url", "md5", "mmap", "progress")
"""The ``data.options`` keys :func:`medmnist_dataset` takes."""

# What reading a damaged or truncated archive raises, depending on where the damage is.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)


class MedMNIST:
    """One split of a MedMNIST 2-D ``.npz`` file, as uint8 ``[3, H, W]`` tensors.

    Works without the rest of synergic, e.g. in a plain PyTorch ``DataLoader``::

        test = MedMNIST("~/data/dermamnist.npz", "test")
        image, label = test[0]  # uint8 tensor [3, 28, 28], int

    Only this split's two arrays are read. Grey images are repeated to three channels because the
    backbones take RGB. ``mmap=True`` extracts the split's images once into
    ``<file stem>.extracted/`` next to the file and memory-maps them, so the largest MedMNIST+ sets
    need not fit in memory and ``DataLoader`` workers share one copy of the pages.

    ``flag`` (default: from the file name) picks the class names; for a flag synergic does not
    know the classes are ``"0"`` .. ``"K-1"``, K taken from the largest label in the file.
    Ids are ``<flag>_<split>_<index>``, e.g. ``dermamnist_train_00012``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        split: str,
        *,
        flag: str | None = None,
        mmap: bool = False,
    ) -> None:
        if split not in SPLITS:
            raise SynergicError(
                f"MedMNIST has no split '{split}'{did_you_mean(split, SPLITS)}; "
                f"use one of {', '.join(SPLITS)}"
            )
        self.path = Path(path).expanduser()
        self.split = split
        self.flag = (flag or parse_file_name(self.path)[0]).lower()
        self._images, labels, self.classes = _read_split(self.path, split, self.flag, mmap=mmap)
        self.labels: list[int] = labels
        width = max(5, len(str(len(labels) - 1)))
        self.ids: list[str] = [f"{self.flag}_{split}_{i:0{width}d}" for i in range(len(labels))]

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the images."""
        return int(self._images.shape[1]), int(self._images.shape[2])

    @property
    def channels(self) -> int:
        """Channels in the file: 1 (grey, returned repeated to 3) or 3."""
        return 3 if self._images.ndim == 4 else 1

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = operator.index(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} images")
        pixels = torch.from_numpy(np.array(self._images[index]))  # a copy: memmaps are read-only
        if pixels.ndim == 2:
            image = pixels.unsqueeze(0).expand(3, -1, -1).contiguous()
        else:
            image = pixels.permute(2, 0, 1).contiguous()
        return image, self.labels[index]

    def __getstate__(self) -> dict:
        # DataLoader workers started with "spawn" (macOS, Windows) receive a pickled copy: send
        # the memory-mapped file's name, not gigabytes of pixels.
        state = self.__dict__.copy()
        if isinstance(self._images, np.memmap):
            state["_images"] = Path(self._images.filename)
        return state

    def __setstate__(self, state: dict) -> None:
        images = state["_images"]
        if isinstance(images, Path):
            mapped = np.load(images, mmap_mode="r", allow_pickle=False)
            state["_images"] = _check_images(mapped, images, f"{state['split']}_images")
        self.__dict__.update(state)

    def __repr__(self) -> str:
        height, width = self.image_size
        return (
            f"MedMNIST({self.flag!r}, split={self.split!r}, {len(self)} images "
            f"{height}x{width}, {len(self.classes)} classes, path={str(self.path)!r})"
        )


def medmnist_dataset(
    root: str | os.PathLike[str] | None = None,
    *,
    split: str,
    flag: str | None = None,
    size: int | None = None,
    download: bool = False,
    url: str | None = None,
    md5: str | None = None,
    mmap: bool = False,
    progress: bool = True,
    **unknown: object,
) -> MedMNIST:
    """A MedMNIST 2-D set from ``<root>/<flag>.npz`` (28x28) or ``<root>/<flag>_<size>.npz``.

    ``root``: the folder holding the files (default ``$SYNERGIC_DATA_DIR/medmnist``, else
    ``~/.cache/synergic/medmnist``), or one ``.npz`` file, whose name then gives flag and size.
    ``download``: fetch a missing file from MedMNIST's Zenodo record, or from ``url`` (the full
    address of the file, for a mirror); files from the record are checked against MedMNIST's
    published MD5, others only against ``md5`` when given. ``mmap``: see :class:`MedMNIST`.
    """
    if unknown:
        key = sorted(unknown)[0]
        raise SynergicError(
            f"unknown data.options key '{key}' for dataset medmnist{did_you_mean(key, OPTIONS)}; "
            f"valid keys: {', '.join(OPTIONS)}"
        )
    for name, value in (("download", download), ("mmap", mmap), ("progress", progress)):
        if not isinstance(value, bool):
            raise SynergicError(f"data.options.{name} must be true or false, got {value!r}")
    size = _check_size(size) if size is not None else None

    if root is not None and str(root).endswith(".npz"):
        path = Path(root).expanduser()
        named_flag, named_size = parse_file_name(path)
        flag = str(flag or named_flag).lower()
        file_size = size or named_size or 28
    else:
        if not flag:
            raise SynergicError(
                "dataset medmnist needs data.options.flag, one of: " + ", ".join(sorted(FLAGS))
            )
        flag = str(flag).lower()
        file_size = size or 28
        folder = Path(root).expanduser() if root is not None else default_root()
        path = folder / file_name(flag, file_size)

    if flag in UNSUPPORTED_FLAGS:
        raise SynergicError(
            f"MedMNIST '{flag}' is {UNSUPPORTED_FLAGS[flag]}; synergic classifies 2-D images into "
            f"one class each: choose one of {', '.join(sorted(FLAGS))}"
        )
    if not path.exists():
        _fetch_missing(
            path, flag, file_size, download=download, url=url, md5=md5, progress=progress
        )

    dataset = MedMNIST(path, split, flag=flag, mmap=mmap)
    # A file renamed by hand is the likely cause of a mismatch; training on it would silently
    # use other images than the recipe says.
    expected = size or parse_file_name(path)[1] or (28 if flag in FLAGS else None)
    if expected is not None and dataset.image_size != (expected, expected):
        height, width = dataset.image_size
        raise SynergicError(
            f"{path} holds {height}x{width} images, but its name or data.options.size says "
            f"{expected}x{expected}; is it the right file?"
        )
    return dataset


def _fetch_missing(
    path: Path,
    flag: str,
    size: int,
    *,
    download: bool,
    url: str | None,
    md5: str | None,
    progress: bool,
) -> None:
    if flag not in FLAGS and url is None:
        raise SynergicError(
            f"MedMNIST file not found: {path}, and '{flag}' is not a MedMNIST 2-D single-label "
            f"set{did_you_mean(flag, FLAGS)}; known flags: {', '.join(sorted(FLAGS))}"
        )
    source = url or official_url(flag, size)
    if not download:
        raise SynergicError(
            f"MedMNIST file not found: {path}; set data.options.download: true to fetch it from "
            f"{source}, or put {path.name} in {path.parent} yourself"
        )
    if md5 is None and url is None:
        md5 = FLAGS[flag].md5.get(size)
    download_file(source, path, md5=md5, progress=progress)


def default_root() -> Path:
    """``$SYNERGIC_DATA_DIR/medmnist``, else ``~/.cache/synergic/medmnist`` (nothing created)."""
    try:
        from synergic.data.paths import default_data_root
    except ImportError:  # a synergic without it: same rule, without XDG_CACHE_HOME
        data_dir = os.environ.get("SYNERGIC_DATA_DIR")
        base = Path(data_dir).expanduser() if data_dir else Path.home() / ".cache" / "synergic"
        return base / "medmnist"
    return default_data_root("medmnist")


def parse_file_name(path: str | os.PathLike[str]) -> tuple[str, int | None]:
    """Flag and size a MedMNIST file name states: ``dermamnist_224.npz`` -> ``("dermamnist", 224)``.

    ``dermamnist.npz`` and ``cohort_2023.npz`` state no size (2023 is not a MedMNIST size):
    ``("dermamnist", None)``, ``("cohort_2023", None)``.
    """
    stem = Path(path).stem.lower()
    match = re.fullmatch(r"(.+)_(\d+)", stem)
    if match and int(match.group(2)) in SIZES:
        return match.group(1), int(match.group(2))
    return stem, None


def _check_size(size: object) -> int:
    try:
        value = int(size)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        value = -1
    if value not in SIZES or isinstance(size, bool):
        raise SynergicError(
            f"data.options.size must be one of {', '.join(map(str, SIZES))} "
            f"(the image sizes MedMNIST publishes), got {size!r}"
        )
    return value


def _read_split(
    path: Path, split: str, flag: str, *, mmap: bool
) -> tuple[np.ndarray, list[int], list[str]]:
    """Images, labels and class names of one split, validated."""
    images_key, labels_key = f"{split}_images", f"{split}_labels"
    if not path.is_file():
        raise SynergicError(f"MedMNIST file not found: {path}")
    # A truncated download loses the zip directory at its end, so it fails here too.
    if not zipfile.is_zipfile(path):
        raise SynergicError(
            f"{path} is not a .npz (zip) archive; if it is an incomplete download, delete it and "
            "fetch it again"
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except _READ_ERRORS as error:
        raise SynergicError(
            f"{path} is not a readable .npz file ({_why(error)}); delete it and fetch it again"
        ) from None
    with archive:
        for key in (images_key, labels_key):
            if key not in archive.files:
                raise SynergicError(
                    f"{path} has no array '{key}' (it has: {', '.join(archive.files) or 'none'}); "
                    "is it a MedMNIST .npz file?"
                )
        images = _extracted(path, images_key) if mmap else _member(archive, path, images_key)
        labels = _member(archive, path, labels_key)
        images = _check_images(images, path, images_key)
        label_list = _check_labels(labels, path, labels_key)
        if len(label_list) != len(images):
            raise SynergicError(
                f"{path}: '{images_key}' has {len(images)} images but '{labels_key}' has "
                f"{len(label_list)} labels; the file is inconsistent: fetch it again"
            )
        if flag in FLAGS:
            classes = list(FLAGS[flag].classes)
        else:  # a set synergic does not know: name the classes by number, alike in every split
            label_keys = [k for k in archive.files if k.endswith("_labels")]
            largest = max(int(_member(archive, path, k).max(initial=0)) for k in label_keys)
            classes = [str(i) for i in range(largest + 1)]
    if label_list and max(label_list) >= len(classes):
        raise SynergicError(
            f"{path}: '{labels_key}' has label {max(label_list)} but {flag} has {len(classes)} "
            f"classes; is the file really {flag}?"
        )
    return images, label_list, classes


def _member(archive: np.lib.npyio.NpzFile, path: Path, key: str) -> np.ndarray:
    try:
        return archive[key]
    except _READ_ERRORS as error:
        raise SynergicError(
            f"cannot read '{key}' from {path} ({_why(error)}); the file is corrupt or "
            "incomplete: delete it and fetch it again"
        ) from None


def _extracted(path: Path, key: str) -> np.ndarray:
    """``key`` memory-mapped from ``<stem>.extracted/<key>.npy``, extracted first when stale.

    The members of an ``.npz`` are ``.npy`` files, usually compressed, so they cannot be mapped
    in place; copying the member out once is the whole "extraction".
    """
    target = path.with_name(f"{path.stem}.extracted") / f"{key}.npy"
    if not (target.is_file() and target.stat().st_mtime >= path.stat().st_mtime):
        part = target.with_name(target.name + ".part")
        try:
            target.parent.mkdir(exist_ok=True)
            with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as source:
                with open(part, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 24)
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            part.unlink(missing_ok=True)
            raise SynergicError(
                f"cannot read '{key}' from {path} ({_why(error)}); the file is corrupt or "
                "incomplete: delete it and fetch it again"
            ) from None
        except OSError as error:
            part.unlink(missing_ok=True)
            raise SynergicError(
                f"cannot extract '{key}' from {path} to {target} ({_why(error)}); make the folder "
                "writable with enough free space, or set data.options.mmap: false"
            ) from None
        os.replace(part, target)
    try:
        return np.load(target, mmap_mode="r", allow_pickle=False)
    except _READ_ERRORS as error:
        raise SynergicError(
            f"cannot memory-map {target} ({_why(error)}); delete it so it is extracted again"
        ) from None


def _check_images(images: np.ndarray, path: Path, key: str) -> np.ndarray:
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)):
        raise SynergicError(
            f"{path}: '{key}' has shape {list(images.shape)}; expected [N, H, W] (grey) or "
            "[N, H, W, 3] (RGB) images (3-D MedMNIST volumes are not supported)"
        )
    if images.dtype != np.uint8:
        raise SynergicError(f"{path}: '{key}' holds {images.dtype} pixels, expected uint8")
    if len(images) == 0:
        raise SynergicError(f"{path}: '{key}' holds no images")
    return images


def _check_labels(labels: np.ndarray, path: Path, key: str) -> list[int]:
    if labels.dtype.kind not in "iub":
        raise SynergicError(f"{path}: '{key}' holds {labels.dtype} values, expected integer labels")
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise SynergicError(
            f"{path}: '{key}' has {labels.shape[1]} labels per image, a multi-label data set; "
            "synergic does single-label classification: choose another flag"
        )
    if labels.ndim == 2:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise SynergicError(f"{path}: '{key}' has shape {list(labels.shape)}, expected [N, 1]")
    values = labels.astype(np.int64).tolist()
    if values and min(values) < 0:
        raise SynergicError(f"{path}: '{key}' has a negative label ({min(values)})")
    return values


def _why(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
