"""Images sorted into one folder per class, torchvision ``ImageFolder`` style::

    root/train/<class>/<image>      (required; defines the classes)
    root/val/<class>/<image>        (optional; without it a validation split is carved from train)
    root/test/<class>/<image>

Images may sit in subfolders of a class folder. Hidden files and folders (``.name``) are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from synergic.data import NoSuchSplit
from synergic.data.datasets.base import FileImageDataset, check_split_name
from synergic.errors import SynergicError, did_you_mean

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""File endings counted as images when ``extensions`` is not given (torchvision's list)."""


def image_folder(
    *,
    root: str | os.PathLike[str] | None,
    split: str,
    extensions: str | Iterable[str] | None = None,
) -> FileImageDataset:
    """Images sorted into root/{train,val,test}/<class>/ folders (options: extensions).

    The classes are the sorted names of the folders in ``root/train``, whatever the split, so a
    label means the same class in every split; a test split may lack a class but may not add one.
    ``extensions`` (e.g. ``["png"]``) limits which files count as images (case-insensitive).
    ``ids`` are the image paths relative to the split folder, e.g. ``"benign/img_001.png"``.
    """
    check_split_name(split, "folder")
    if root is None:
        raise SynergicError(
            "data set 'folder' needs data.root: a folder holding train/<class>/ and test/<class>/"
        )
    root_dir = Path(root).expanduser()
    if not root_dir.is_dir():
        raise SynergicError(f"data set 'folder': data.root {root_dir} is not a folder")
    suffixes = _normalise_extensions(extensions)

    train_dir = root_dir / "train"
    if not train_dir.is_dir():
        raise SynergicError(
            f"data set 'folder': no train folder in {root_dir}; "
            f"expected {train_dir}/<class>/<image>"
        )
    classes = _subfolders(train_dir)
    if not classes:
        raise SynergicError(
            f"data set 'folder': {train_dir} has no class folders; "
            f"expected {train_dir}/<class>/<image>"
        )

    split_dir = root_dir / split
    if not split_dir.is_dir():
        if split == "val":
            raise NoSuchSplit(f"data set 'folder' has no validation folder {split_dir}")
        raise SynergicError(
            f"data set 'folder': no {split} folder in {root_dir}; "
            f"expected {split_dir}/<class>/<image>"
        )
    for class_name in _subfolders(split_dir):
        if class_name not in classes:
            raise SynergicError(
                f"data set 'folder': class folder {split_dir / class_name} is not a class of "
                f"{train_dir}{did_you_mean(class_name, classes)}; classes: {', '.join(classes)}"
            )

    ids, labels, paths = [], [], []
    for label, class_name in enumerate(classes):
        class_dir = split_dir / class_name
        files = _image_files(class_dir, suffixes) if class_dir.is_dir() else []
        if not files and split == "train":
            raise SynergicError(
                f"data set 'folder': class folder {class_dir} has no images "
                f"(looked for {', '.join(suffixes)}); add images or remove the folder"
            )
        for path in files:
            ids.append(path.relative_to(split_dir).as_posix())
            labels.append(label)
            paths.append(path)
    if not ids:
        raise SynergicError(
            f"data set 'folder': no images in {split_dir} (looked for {', '.join(suffixes)})"
        )
    return FileImageDataset(classes, ids, labels, paths, name=f"folder ({split})", source=split_dir)


def _normalise_extensions(extensions: str | Iterable[str] | None) -> tuple[str, ...]:
    if extensions is None:
        return IMAGE_EXTENSIONS
    if isinstance(extensions, str):
        extensions = [extensions]
    suffixes = []
    for extension in extensions:
        if not isinstance(extension, str) or not extension.strip(". "):
            raise SynergicError(
                f"data set 'folder': bad entry {extension!r} in extensions; use e.g. ['png', 'jpg']"
            )
        extension = extension.strip().lower()
        suffixes.append(extension if extension.startswith(".") else "." + extension)
    return tuple(suffixes)


def _subfolders(folder: Path) -> list[str]:
    return sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.is_dir() and not entry.name.startswith(".")
    )


def _image_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    found = []
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
        for file_name in files:
            if not file_name.startswith(".") and file_name.lower().endswith(suffixes):
                found.append(Path(directory) / file_name)
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())
