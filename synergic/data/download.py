"""Downloading data sets: the generic parts that every data set's ``download`` is built on.

* :func:`fetch`: one URL to one file, resumable;
* :func:`fetch_unpacked`: an official zip archive fetched, checked and unpacked into its folder
  once (a ``.<folder>.complete`` marker records it; the archive is then deleted);
* :func:`unpack_zip`: the checked unpacking (CRC of every member, no member outside the folder);
* :func:`verify_images`: after a download, one image per ground-truth row, or a one-line error;
* :func:`data_root`: the folder a data set is downloaded to.

Each built-in data set's ``download`` (``synergic.data.datasets.isic2016.download`` ...
``isic2020.download``) is a few lines over these; ``synergic data download NAME`` calls it.
Only the standard library talks to the network (``urllib``) and unpacks (``zipfile``); ``rich``
draws the progress bars. A file is written to ``<name>.part`` and renamed when complete, so a file
under its final name is always whole; an interrupted download continues where it stopped (HTTP
``Range``) when the server allows it, and starts over when it does not.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import zipfile
import zlib
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from synergic import __version__
from synergic.data.listing import list_image_files
from synergic.data.paths import default_data_root
from synergic.errors import SynergicError

__all__ = [
    "completion_marker",
    "count_images",
    "data_root",
    "default_data_root",
    "fetch",
    "fetch_unpacked",
    "has_one_image_per_row",
    "unpack_zip",
    "verify_images",
]

_CHUNK_BYTES = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+|\*)(?:-(\d+))?/(\d+|\*)")


def fetch(
    url: str, dest: str | os.PathLike[str], *, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``dest`` unless ``dest`` already exists; return ``dest``.

    The bytes go to ``dest.part`` first. A ``.part`` left by an interrupted call is continued
    with an HTTP ``Range`` request when the server answers ``206 Partial Content``, and replaced
    when it answers ``200``. ``dest`` appears only once the whole body (``Content-Length``) has
    arrived. Any network failure raises a one-line :class:`SynergicError` and leaves the ``.part``
    to resume from.
    """
    dest = Path(dest)
    if dest.is_file():
        return dest
    hint = f"check your network or download by hand into {dest.parent}"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SynergicError(
            f"cannot create {dest.parent}: {error.strerror or error}; check its permissions or "
            "choose another --root"
        ) from None
    part = dest.with_name(dest.name + ".part")

    for _ in range(2):  # a second round only after the server refused to resume
        offset = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": f"synergic/{__version__}"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = urlopen(Request(url, headers=headers), timeout=timeout)
        except HTTPError as error:
            error.close()
            if error.code == 416 and offset:
                # Our .part reaches the end already, or it is longer than the file: either it
                # is complete or it is garbage.
                total = _content_range(error.headers.get("Content-Range", ""))[2]
                if total == offset:
                    os.replace(part, dest)
                    return dest
                part.unlink()
                continue
            raise SynergicError(
                f"could not download {url}: HTTP {error.code} {error.reason}; {hint}"
            ) from None
        except (URLError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", None) or error
            raise SynergicError(f"could not download {url}: {reason}; {hint}") from None

        with response:
            length = _int_or_none(response.headers.get("Content-Length"))
            if response.status == 206 and offset:
                start, _, total = _content_range(response.headers.get("Content-Range", ""))
                if start is not None and start != offset:
                    part.unlink()  # the server sent some other range; start over cleanly
                    continue
                if total is None and length is not None:
                    total = offset + length
                mode = "ab"
            else:
                offset, total, mode = 0, length, "wb"
            _stream(response, part, mode, offset, total, url=url, progress=progress, hint=hint)
        received = part.stat().st_size
        if total is not None and received != total:
            raise SynergicError(
                f"could not download {url}: connection closed after {received} of {total} bytes; "
                f"run again to resume, or {hint}"
            )
        os.replace(part, dest)
        return dest
    raise SynergicError(f"could not download {url}: the server refused to resume; {hint}")


def _stream(
    response, part: Path, mode: str, offset: int, total: int | None, *,
    url: str, progress: bool, hint: str,
) -> None:
    """Append (``mode="ab"``) or write the response body to ``part``, drawing a progress bar."""
    bar = _progress_bar() if progress else None
    with bar if bar is not None else nullcontext(), open(part, mode) as out:
        task = None
        if bar is not None:
            task = bar.add_task(url.rsplit("/", 1)[-1], total=total, completed=offset)
        while True:
            try:
                chunk = response.read(_CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as error:
                raise SynergicError(
                    f"could not download {url}: {error or type(error).__name__}; "
                    f"run again to resume, or {hint}"
                ) from None
            if not chunk:
                break
            out.write(chunk)
            if bar is not None:
                bar.advance(task, len(chunk))


def _progress_bar():
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


def _content_range(value: str) -> tuple[int | None, int | None, int | None]:
    """``(first byte, last byte, total)`` of a ``Content-Range`` header; unknown parts are None."""
    match = _CONTENT_RANGE.match(value.strip()) if value else None
    if not match:
        return None, None, None
    return tuple(_int_or_none(group) for group in match.groups())  # type: ignore[return-value]


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def data_root(root: str | os.PathLike[str] | None, name: str) -> Path:
    """``root`` (or :func:`default_data_root` ``(name)`` when None), created; return it.

    Raises:
        SynergicError: the folder cannot be created (one line, with the reason).
    """
    root_dir = Path(root).expanduser() if root is not None else default_data_root(name)
    try:
        root_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SynergicError(
            f"cannot create {root_dir}: {error.strerror or error}; check its permissions or "
            "choose another --root"
        ) from None
    return root_dir


def completion_marker(folder: Path) -> Path:
    """The empty file beside ``folder`` that says its archive was unpacked whole:
    ``.<folder name>.complete``."""
    return folder.parent / f".{folder.name}.complete"


def count_images(folder: Path, extensions: Sequence[str] = (".jpg",)) -> int:
    """How many images ``folder`` holds (not its subfolders), by the one listing rule
    (:func:`synergic.data.listing.list_image_files`: a macOS ``._ISIC_0000000.jpg`` sidecar is
    not an image)."""
    return len(list_image_files(folder, extensions=list(extensions), recursive=False))


def fetch_unpacked(
    base_url: str,
    folder: Path,
    *,
    complete: Callable[[Path], bool] | None = None,
    progress: bool = True,
) -> Path:
    """Make sure ``folder`` holds the unpacked official archive ``<base_url><folder name>.zip``;
    return ``folder``.

    Nothing is fetched when ``folder`` has its :func:`completion_marker`, or when ``complete``
    says that a copy unpacked by hand is whole (e.g. one image per ground-truth row). Otherwise
    the archive is downloaded beside ``folder`` with :func:`fetch` (resumable), unpacked into it
    with :func:`unpack_zip`, marked complete and deleted.

    Raises:
        SynergicError: the download fails (the ``.part`` stays, to resume from), or the archive
            is damaged or unsafe (it is deleted, so the next call fetches it anew).
    """
    marker = completion_marker(folder)
    if folder.is_dir() and (marker.is_file() or (complete is not None and complete(folder))):
        return folder
    base = base_url if base_url.endswith("/") else base_url + "/"
    zip_name = f"{folder.name}.zip"
    archive = fetch(base + zip_name, folder.parent / zip_name, progress=progress)
    unpack_zip(archive, folder, progress=progress)
    marker.touch()
    archive.unlink()
    return folder


def unpack_zip(archive: Path, folder: Path, *, progress: bool = True) -> None:
    """Unpack ``archive`` so that its files end up directly in ``folder``.

    The official archives hold one top folder named like the zip; a flat archive, or one whose
    single top folder has another name, is accepted too, and a ``__MACOSX`` folder is dropped.
    Every member must pass its CRC check (``zipfile.ZipFile.testzip``) and none may land outside
    ``folder``'s parent (absolute paths, ``..``, symbolic links: "zip slip"). The files go to a
    staging folder first, so ``folder`` never holds half an archive; an incomplete earlier copy
    in ``folder`` is completed rather than deleted.

    Raises:
        SynergicError: the archive is not a valid zip, fails a CRC check or has an unsafe member
            (the archive is deleted), or the disk refuses the files.
    """
    staging = folder.parent / f".{folder.name}.unpacking"
    if staging.exists():
        shutil.rmtree(staging)
    if progress:
        from rich.console import Console

        Console(stderr=True).print(f"unpacking {archive.name}")
    try:
        with zipfile.ZipFile(archive) as opened:
            damaged = opened.testzip()
            if damaged is not None:
                raise zipfile.BadZipFile(f"member {damaged} fails its CRC check")
            for member in opened.infolist():
                if not _is_safe_member(member):
                    archive.unlink()
                    raise SynergicError(
                        f"refusing to unpack {archive}: member {member.filename!r} would be "
                        f"written outside {folder.parent}; it was deleted: this is not the "
                        "official archive, so check --base-url"
                    )
            opened.extractall(staging)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        archive.unlink(missing_ok=True)
        raise SynergicError(
            f"downloaded {archive} is not a valid zip archive ({error}); it was deleted: "
            "run the download again"
        ) from None
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise SynergicError(
            f"could not unpack {archive}: {error.strerror or error}; free disk space or check "
            f"the permissions of {folder.parent}, then run the download again"
        ) from None

    shutil.rmtree(staging / "__MACOSX", ignore_errors=True)
    entries = list(staging.iterdir())
    if (staging / folder.name).is_dir():
        source = staging / folder.name
    elif len(entries) == 1 and entries[0].is_dir():
        source = entries[0]
    else:
        source = staging
    if not folder.exists():
        os.replace(source, folder)
    else:  # an incomplete earlier copy: complete it rather than delete what is there
        for path in sorted(source.rglob("*")):
            if path.is_file():
                target = folder / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    shutil.rmtree(staging, ignore_errors=True)


def _is_safe_member(member: zipfile.ZipInfo) -> bool:
    name = member.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return False
    if any(part == ".." for part in name.split("/")):
        return False
    is_symlink = (member.external_attr >> 16) & 0o170000 == 0o120000
    return not is_symlink


def verify_images(
    folder: Path,
    read_ids: Callable[[], Sequence[str]],
    *,
    what: str,
    source: Path,
    dataset: str,
    extension: str = ".jpg",
) -> None:
    """Check a downloaded split: ``read_ids()`` (the image ids of its ground truth in ``source``)
    must be non-empty, each with its ``<id><extension>`` in ``folder``, and ``folder`` must hold
    no other image of that extension. On failure the folder's :func:`completion_marker` is
    removed, so that the next download looks again.

    Raises:
        SynergicError: one line naming ``what`` (e.g. ``"ISIC 2017 val data"``), the folder, the
            CSV and a missing image, and saying to delete the data folder and download
            ``dataset`` again. An error of ``read_ids`` is reported as the data being damaged.
    """
    marker = completion_marker(folder)
    redo = f"delete {folder.parent} and run 'synergic data download {dataset}' again"
    try:
        ids = list(read_ids())
    except SynergicError as error:
        marker.unlink(missing_ok=True)
        raise SynergicError(f"downloaded {what} is damaged: {error}; {redo}") from None
    missing = [image_id for image_id in ids if not (folder / f"{image_id}{extension}").is_file()]
    images = count_images(folder, (extension,)) if folder.is_dir() else 0
    if not ids or missing or images != len(ids):
        marker.unlink(missing_ok=True)
        detail = f", e.g. no {folder / (missing[0] + extension)}" if missing else ""
        raise SynergicError(
            f"downloaded {what} is incomplete: {images} images in {folder} "
            f"for {len(ids)} rows in {source}{detail}; {redo}"
        )


def has_one_image_per_row(folder: Path, read_ids: Callable[[], Sequence[str]]) -> bool:
    """Whether a folder unpacked by hand is whole: ``read_ids()`` works, is non-empty, and
    ``folder`` holds exactly as many ``.jpg`` images. For :func:`fetch_unpacked`'s ``complete``."""
    try:
        ids = read_ids()
    except SynergicError:
        return False
    return bool(ids) and count_images(folder) == len(ids)


# ISIC 2016 lives in synergic.data.datasets.isic2016 (its download is isic2016.download); these
# names stay importable from here, resolved at first use so that neither module imports the other
# when it loads.
_MOVED = {
    "ISIC2016_BASE_URL": "BASE_URL",
    "ISIC2016_FILES": "DOWNLOAD_FILES",
    "download_isic2016": "download",
}


def __getattr__(name: str):
    if name in _MOVED:
        from synergic.data.datasets import isic2016

        return getattr(isic2016, _MOVED[name])
    raise AttributeError(f"module 'synergic.data.download' has no attribute {name!r}")
