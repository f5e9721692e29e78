"""Images sorted into one folder per class, torchvision ``ImageFolder`` style::

    root/train/<class>/<image>      (required; defines the classes)
    root/val/<class>/<image>        (optional; without it a validation split is carved from train)
    root/test/<class>/<image>

Images may sit in subfolders of a class folder. Files are listed by
:func:`synergic.data.listing.list_image_files`: hidden files and folders (``.name``, including
macOS ``._name`` sidecars), ``__MACOSX``, ``Thumbs.db`` and the like are skipped, and each file is
listed once even when links reach it twice.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from synergic.data import NoSuchSplit
from synergic.data.datasets.base import FileImageDataset, check_split_name
from synergic.data.listing import (
    IMAGE_EXTENSIONS,
    ImageListingWarning,
    is_ignored,
    list_image_files,
)
from synergic.errors import SynergicError, did_you_mean

__all__ = ["IMAGE_EXTENSIONS", "image_folder"]


def image_folder(
    root: str | os.PathLike[str] | None,
    *,
    split: str,
    extensions: str | Iterable[str] | None = None,
    classes: Sequence[str] | None = None,
) -> FileImageDataset:
    """Images sorted into root/{train,val,test}/<class>/ folders (options: extensions, classes).

    Args:
        root: the folder holding ``train/`` and ``test/`` (and optionally ``val/``).
        split: ``train``, ``val`` or ``test``; ``val`` raises :class:`NoSuchSplit` without a
            ``val/`` folder.
        extensions: which files count as images, e.g. ``["png"]`` (case-insensitive); default
            :data:`~synergic.data.listing.IMAGE_EXTENSIONS`.
        classes: the class names in label order; every class folder must be one of them and
            every one of them needs a folder in ``train/``. Default: the sorted names of the
            folders in ``root/train``.

    The classes are the same for every split, so a label means the same class everywhere; a
    test split may lack a class but may not add one. ``ids`` are the image paths relative to the
    split folder, e.g. ``"benign/img_001.png"``.

    Raises:
        SynergicError: a missing folder, a class folder outside ``classes`` or ``train/``, two
            class folders whose names differ only in letter case or surrounding spaces, a training
            class without images, or one file (through links) in two class folders.
        NoSuchSplit: ``split="val"`` without a ``val/`` folder.

    Warns:
        ImageListingWarning: a file reached twice in a split is listed once; images of ``val/``
        or ``test/`` that are the same files as images of an earlier split are named.
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
    train_folders = _subfolders(train_dir)
    _reject_case_variants(train_dir, train_folders, suffixes)
    class_names = _check_classes(classes, train_dir, train_folders)
    if not class_names:
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
        if class_name not in class_names:
            given = "data.options.classes" if classes is not None else f"{train_dir}"
            raise SynergicError(
                f"data set 'folder': class folder {split_dir / class_name} is not a class of "
                f"{given}{did_you_mean(class_name, class_names)}; "
                f"classes: {', '.join(class_names)}"
            )

    files = _class_files(split_dir, class_names, suffixes)
    ids, labels, paths = [], [], []
    for label, class_name in enumerate(class_names):
        if not files[class_name] and split == "train":
            raise SynergicError(
                f"data set 'folder': class folder {train_dir / class_name} has no images "
                f"(looked for {', '.join(suffixes)}); add images or remove the folder"
            )
        for path in files[class_name]:
            ids.append(path.relative_to(split_dir).as_posix())
            labels.append(label)
            paths.append(path)
    if not ids:
        raise SynergicError(
            f"data set 'folder': no images in {split_dir} (looked for {', '.join(suffixes)})"
        )
    _warn_about_shared_files(root_dir, split, paths, class_names, suffixes)
    return FileImageDataset(
        class_names, ids, labels, paths, name=f"folder ({split})", source=split_dir
    )


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
        entry.name for entry in folder.iterdir() if entry.is_dir() and not is_ignored(entry)
    )


def _spelling_key(name: str) -> str:
    return name.strip().casefold()


def _reject_case_variants(train_dir: Path, names: list[str], suffixes: tuple[str, ...]) -> None:
    """Two class folders such as ``benign`` and ``Benign`` are one class spelled twice."""
    by_key: dict[str, list[str]] = {}
    for name in names:
        by_key.setdefault(_spelling_key(name), []).append(name)
    for variants in by_key.values():
        if len(variants) > 1:
            # Suggest the spelling with the most images: the others are the stray ones.
            counts = {
                name: len(_listed_quietly(train_dir / name, suffixes)) for name in variants
            }
            best = max(variants, key=lambda name: (counts[name], name == name.strip().lower()))
            stray = next(name for name in variants if name != best)
            raise SynergicError(
                f"data set 'folder': class folders {train_dir / stray}/ ({_images(counts[stray])}) "
                f"and {train_dir / best}/ ({_images(counts[best])}) differ only in letter case or "
                f"surrounding spaces (did you mean '{best}'?); move the images into one folder"
            )


def _images(count: int) -> str:
    return f"{count} image" + ("" if count == 1 else "s")


def _check_classes(
    classes: Sequence[str] | None, train_dir: Path, train_folders: list[str]
) -> list[str]:
    if classes is None:
        return train_folders
    if isinstance(classes, str) or not all(isinstance(c, str) and c.strip() for c in classes):
        raise SynergicError(
            "data set 'folder': data.options.classes must be a list of class folder names, "
            "e.g. [benign, malignant]"
        )
    names = list(classes)
    keys = [_spelling_key(name) for name in names]
    if len(set(keys)) != len(keys):
        repeated = next(name for name, key in zip(names, keys) if keys.count(key) > 1)
        raise SynergicError(
            f"data set 'folder': data.options.classes names '{repeated}' twice (letter case and "
            f"surrounding spaces aside): {names}"
        )
    for name in names:
        if name not in train_folders:
            raise SynergicError(
                f"data set 'folder': data.options.classes names '{name}' but {train_dir} has no "
                f"folder '{name}'{did_you_mean(name, train_folders)}; "
                f"its class folders: {', '.join(train_folders) or 'none'}"
            )
    return names


def _class_files(
    split_dir: Path, class_names: list[str], suffixes: tuple[str, ...]
) -> dict[str, list[Path]]:
    """The image files of each class folder of ``split_dir``; one file in two classes (through a
    link) is an error, since it would be an image with two labels."""
    files: dict[str, list[Path]] = {}
    owner: dict[str, tuple[str, Path]] = {}
    for class_name in class_names:
        class_dir = split_dir / class_name
        files[class_name] = (
            list_image_files(class_dir, extensions=suffixes) if class_dir.is_dir() else []
        )
        for path in files[class_name]:
            real = os.path.realpath(path)
            if real in owner:
                other_class, other_path = owner[real]
                raise SynergicError(
                    f"data set 'folder': {path} and {other_path} are the same file (through a "
                    f"link) in two classes, '{other_class}' and '{class_name}'; keep it in one "
                    "class folder"
                )
            owner[real] = (class_name, path)
    return files


def _listed_quietly(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The listing without its warnings: for comparisons, when the folder's own listing warns."""
    if not folder.is_dir():
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageListingWarning)
        return list_image_files(folder, extensions=suffixes)


def _warn_about_shared_files(
    root_dir: Path, split: str, paths: list[Path], class_names: list[str], suffixes: tuple[str, ...]
) -> None:
    """One warning line when images of ``val/`` or ``test/`` are files of an earlier split (e.g.
    ``val`` linking to ``train``): they are not held out."""
    earlier = {"train": [], "val": ["train"], "test": ["train", "val"]}[split]
    mine = {os.path.realpath(path): path for path in paths}
    for other in earlier:
        other_dir = root_dir / other
        if not other_dir.is_dir():
            continue
        shared = [
            (mine[real], path)
            for class_name in class_names
            for path in _listed_quietly(other_dir / class_name, suffixes)
            if (real := os.path.realpath(path)) in mine
        ]
        if shared:
            here, there = shared[0]
            warnings.warn(
                f"data set 'folder': {len(shared)} of the {len(paths)} images of "
                f"{root_dir / split} are the same files as images of {other_dir} (e.g. {here} is "
                f"{there}), so they are not held out; remove the link or the files from one of "
                "the splits",
                ImageListingWarning,
                stacklevel=3,
            )
