"""Which files in a folder are images: the one listing that every part of synergic uses.

:func:`list_image_files` turns folders (and files named one by one) into a sorted list of image
files. The ``folder`` data set, ``synergic predict`` and the ISIC 2016 download check all call it,
so a file counts as an image in the same way everywhere.

**Skipped** (silently, when found inside a folder; with a one-line warning when named
explicitly): what operating systems, archivers and tools leave beside images, never images
themselves.

* names starting with ``.``: hidden files and folders, including macOS AppleDouble sidecars
  (``._ISIC_0000040.jpg``: 4 KB of metadata that starts with the bytes ``00 05 16 07``, written
  by macOS on non-Apple disks and into zip archives), ``.DS_Store``, ``.ipynb_checkpoints``
  (Jupyter), ``.Trash-1000``, ``.Spotlight-V100``, ``.git``;
* names starting with ``~$``: Microsoft Office lock files;
* these names, in any letter case: ``__MACOSX`` (macOS zip metadata), ``Thumbs.db``,
  ``ehthumbs.db``, ``ehthumbs_vista.db``, ``desktop.ini``, ``$RECYCLE.BIN``, ``RECYCLER``,
  ``System Volume Information`` (Windows), ``@eaDir``, ``#recycle`` (Synology), ``@Recycle``
  (QNAP), ``lost+found`` (fsck), ``Icon\\r`` (macOS folder icons);
* files whose extension is not in ``extensions`` (any letter case).

The names are those of GitHub's ``gitignore`` templates for macOS, Windows and Synology
(github.com/github/gitignore, ``Global/``); the AppleDouble format is RFC 1740.

**Files the ISIC challenges ship beside their images** (with ``skip_companions=True``, as
``synergic predict``, ``explain`` and ``export`` list images: see :func:`companion_reason`): the
superpixel maps of ISIC 2017 (``ISIC_0000000_superpixels.png``), the lesion masks of ISIC
2016-2018 Part 1 / Task 1 (``ISIC_0000000_segmentation.png``, ``..._Segmentation.png``), the
attribute masks of ISIC 2018 Task 2 (``ISIC_0000000_attribute_globules.png``) and, when named
one by one (``folder/*``), the ``*_metadata.csv``, ``ATTRIBUTION.txt`` and ``LICENSE.txt`` files
of the image folders. They are skipped in folders and when named, and one
:class:`ImageListingWarning` says how many were skipped: a submission that lists them is refused
by the challenges' scorer ("Extra images in CSV").

**Each file once.** Links are followed, but every file is listed once by its resolved path
(:func:`os.path.realpath`), and a folder reached a second time (through a link, or a link loop)
is not entered again; when that happens, one :class:`ImageListingWarning` line says which path
was the same as which. Hard links and identical copies are separate files and are not detected.

**Order.** The files of each folder are sorted by their path relative to that folder, written with
``/`` (``benign/a.jpg`` < ``benign/more/b.jpg``), so a listing is the same on every machine.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

from synergic.errors import SynergicError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""File endings counted as images when ``extensions`` is not given (torchvision's list)."""

IGNORED_NAMES = {
    "__macosx": "macOS zip metadata",
    "thumbs.db": "a Windows thumbnail cache",
    "ehthumbs.db": "a Windows thumbnail cache",
    "ehthumbs_vista.db": "a Windows thumbnail cache",
    "desktop.ini": "Windows folder settings",
    "$recycle.bin": "a Windows recycle bin",
    "recycler": "a Windows recycle bin",
    "system volume information": "a Windows system folder",
    "@eadir": "Synology thumbnails",
    "#recycle": "a Synology recycle bin",
    "@recycle": "a QNAP recycle bin",
    "lost+found": "a filesystem repair folder",
    "icon\r": "a macOS folder icon",
}
"""Names (lower case) of files and folders that are never images, with what leaves them."""

IGNORED_PREFIXES = {
    "._": "a macOS AppleDouble sidecar (metadata)",
    ".": "a hidden file",
    "~$": "a Microsoft Office lock file",
}
"""Name beginnings that are never images, with what they are; the first match explains."""


_COMPANION_STEMS = (
    (re.compile(r"_superpixels$"), "an ISIC 2017 superpixel map (Part 2)"),
    (re.compile(r"_segmentation$"), "an ISIC lesion segmentation mask (Part 1 / Task 1)"),
    (re.compile(r"_attribute_[a-z_]+$"), "an ISIC 2018 Task 2 attribute mask"),
    (re.compile(r"_metadata$"), "an ISIC image folder's metadata"),
)
_COMPANION_NAMES = {
    "attribution.txt": "an ISIC image folder's attribution",
    "license.txt": "an ISIC image folder's licence",
}


def companion_reason(name: str) -> str | None:
    """What the file called ``name`` (a bare name) is when it is one that the ISIC challenges
    ship beside their images, not an image to classify; else None. Letter case is ignored.

    >>> companion_reason("ISIC_0000000_superpixels.png")
    'an ISIC 2017 superpixel map (Part 2)'
    >>> companion_reason("ISIC_0000000.jpg") is None
    True
    """
    lowered = name.lower()
    if lowered in _COMPANION_NAMES:
        return _COMPANION_NAMES[lowered]
    stem = lowered.rsplit(".", 1)[0]
    return next((reason for pattern, reason in _COMPANION_STEMS if pattern.search(stem)), None)


class ImageListingWarning(UserWarning):
    """A listing skipped a file that was named explicitly, or reached a file or folder twice."""


def ignored_reason(name: str) -> str | None:
    """Why a file or folder called ``name`` (a bare name, not a path) is skipped, or None.

    >>> ignored_reason("._ISIC_0000040.jpg")
    'a macOS AppleDouble sidecar (metadata)'
    >>> ignored_reason("ISIC_0000040.jpg") is None
    True
    """
    for prefix, reason in IGNORED_PREFIXES.items():
        if name.startswith(prefix):
            return reason
    return IGNORED_NAMES.get(name.lower())


def is_ignored(path: str | os.PathLike[str]) -> bool:
    """Whether the file or folder ``path`` is one that :func:`list_image_files` skips.

    Only the last part of the path is looked at: ``/data/.cache/x.jpg`` is not ignored, but
    ``/data/._x.jpg`` and ``/data/__MACOSX`` are.
    """
    return ignored_reason(Path(path).name) is not None


def list_image_files(
    sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    recursive: bool = True,
    skip_companions: bool = False,
) -> list[Path]:
    """The image files in ``sources``, each once, in a deterministic order.

    Args:
        sources: a folder or a file, or several. A folder contributes its image files (in its
            subfolders too, when ``recursive``), sorted by their ``/``-separated path relative to
            it; a file is taken as named, whatever its extension, unless its name is one that is
            never an image (see the module documentation), which is skipped with a warning.
            Sources keep the order they are given in.
        extensions: file endings that count as images inside folders, with the dot
            (``".jpg"``), compared case-insensitively. Default :data:`IMAGE_EXTENSIONS`.
        recursive: whether to look into subfolders.
        skip_companions: also skip the files the ISIC challenges ship beside their images
            (:func:`companion_reason`), in folders and when named, with one
            :class:`ImageListingWarning` saying how many.

    Returns:
        The files as paths under the sources (links are not replaced by their targets), each
        resolved file once: a file or folder reached again is left out, and one
        :class:`ImageListingWarning` says so. The list may be empty.

    Raises:
        SynergicError: a source does not exist, a folder cannot be read, or a link that looks
            like an image points nowhere.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    suffixes = tuple(extension.lower() for extension in extensions)
    seen_files: dict[str, Path] = {}
    seen_folders: dict[str, Path] = {}
    repeats: list[tuple[Path, Path]] = []  # (reached again, reached first)
    skipped: list[tuple[Path, str]] = []
    companions: list[tuple[Path, str]] | None = [] if skip_companions else None
    listed: list[Path] = []

    def keep(path: Path, real: str) -> None:
        if real in seen_files:
            repeats.append((path, seen_files[real]))
        else:
            seen_files[real] = path
            listed.append(path)

    for source in sources:
        source = Path(source)
        if source.is_dir():
            real = os.path.realpath(source)
            if real in seen_folders:
                repeats.append((source, seen_folders[real]))
                continue
            seen_folders[real] = source
            found = _walk(source, real, suffixes, recursive, seen_folders, repeats, companions)
            for _, path, real_file in sorted(found, key=lambda item: item[0]):
                keep(path, real_file)
        elif source.is_file():
            reason = ignored_reason(source.name)
            companion = companion_reason(source.name) if companions is not None else None
            if reason is not None:
                skipped.append((source, reason))
            elif companion is not None:
                companions.append((source, companion))  # type: ignore[union-attr]
            else:
                keep(source, os.path.realpath(source))
        elif source.is_symlink():
            raise SynergicError(f"{source} is a broken link (its target does not exist)")
        else:
            raise SynergicError(f"{source} not found")

    if skipped:
        path, reason = skipped[0]
        more = f" and {len(skipped) - 1} more such files" if len(skipped) > 1 else ""
        warnings.warn(
            f"skipped {path}{more}: {reason}, not an image", ImageListingWarning, stacklevel=2
        )
    if companions:
        path, reason = companions[0]
        count = len(companions)
        warnings.warn(
            f"skipped {count} file{'s' if count > 1 else ''} that the ISIC challenges ship beside "
            f"their images, not images to classify (e.g. {path}: {reason})",
            ImageListingWarning, stacklevel=2,
        )
    if repeats:
        again, first = repeats[0]
        more = f" ({len(repeats)} such paths)" if len(repeats) > 1 else ""
        warnings.warn(
            f"{again} is {first}, reached twice (through a link, or named twice){more}; its "
            "images are listed once: remove the link to silence this",
            ImageListingWarning,
            stacklevel=2,
        )
    return listed


def _walk(
    top: Path,
    real_top: str,
    suffixes: tuple[str, ...],
    recursive: bool,
    seen_folders: dict[str, Path],
    repeats: list[tuple[Path, Path]],
    companions: list[tuple[Path, str]] | None = None,
) -> list[tuple[str, Path, str]]:
    """``(relative posix path, path, resolved path)`` of the image files under ``top``; folders
    reached again (through links, or a link loop) are recorded in ``repeats`` and not entered;
    with ``companions`` (a list), the challenges' companion files are recorded there and left
    out."""
    found: list[tuple[str, Path, str]] = []
    pending = [(top, real_top, "")]
    while pending:
        folder, real_folder, prefix = pending.pop()
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as error:
            raise SynergicError(
                f"cannot read folder {folder}: {error.strerror or error}; check its permissions"
            ) from None
        subfolders = []
        for entry in entries:
            if ignored_reason(entry.name) is not None:
                continue
            path = folder / entry.name
            relative = prefix + entry.name
            # Only a link needs resolving: below a resolved folder, a plain name is resolved.
            if entry.is_symlink():
                real = os.path.realpath(path)
            else:
                real = os.path.join(real_folder, entry.name)
            if entry.is_dir():
                if not recursive:
                    continue
                if real in seen_folders:
                    repeats.append((path, seen_folders[real]))
                    continue
                seen_folders[real] = path
                subfolders.append((path, real, relative + "/"))
            elif entry.name.lower().endswith(suffixes):
                if companions is not None and (companion := companion_reason(entry.name)):
                    companions.append((path, companion))
                    continue
                if not entry.is_file() and entry.is_symlink():
                    raise SynergicError(
                        f"{path} is a broken link (its target does not exist); fix or remove it"
                    )
                if entry.is_file():
                    found.append((relative, path, real))
        pending.extend(reversed(subfolders))  # depth first, in name order
    return found
