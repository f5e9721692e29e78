"""Downloading data sets: a resumable :func:`fetch` and the ISIC 2016 downloader.

Only the standard library talks to the network (``urllib``); ``rich`` draws the progress bars.
A file is written to ``<name>.part`` and renamed when complete, so a file under its final name is
always whole; an interrupted download continues where it stopped (HTTP ``Range``) when the server
allows it, and starts over when it does not.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import zipfile
import zlib
from contextlib import nullcontext
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from synergic import __version__
from synergic.data.listing import list_image_files
from synergic.data.paths import default_data_root
from synergic.errors import SynergicError

__all__ = [
    "ISIC2016_BASE_URL",
    "ISIC2016_FILES",
    "default_data_root",
    "download_isic2016",
    "fetch",
]

ISIC2016_BASE_URL = "https://isic-challenge-data.s3.amazonaws.com/2016/"
"""Where the ISIC challenge publishes the 2016 files."""

ISIC2016_FILES = (
    "ISBI2016_ISIC_Part3_Training_Data.zip",
    "ISBI2016_ISIC_Part3_Training_GroundTruth.csv",
    "ISBI2016_ISIC_Part3_Test_Data.zip",
    "ISBI2016_ISIC_Part3_Test_GroundTruth.csv",
)
"""The four official files of ISIC 2016 Part 3 (lesion classification)."""

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
        raise SynergicError(f"cannot create {dest.parent}: {error.strerror or error}") from None
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


def download_isic2016(
    root: str | os.PathLike[str] | None = None,
    *,
    base_url: str = ISIC2016_BASE_URL,
    progress: bool = True,
) -> Path:
    """Download and unpack ISIC 2016 Part 3 into ``root``; return ``root``.

    ``root`` defaults to :func:`default_data_root` ``("isic2016")``. Each archive is checked
    (``zipfile.testzip``), unpacked (refusing members that would land outside ``root``) and
    deleted; a ``.<folder>.complete`` marker then records the unpacked folder. Finally both splits
    must load, with as many images in each folder as rows in its CSV. Calling it again fetches
    nothing that is already complete, so it is safe to rerun after an interruption.
    """
    from synergic.data.datasets import isic2016 as layout

    root_dir = Path(root).expanduser() if root is not None else default_data_root("isic2016")
    try:
        root_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SynergicError(f"cannot create {root_dir}: {error.strerror or error}") from None
    base = base_url if base_url.endswith("/") else base_url + "/"

    for split, (image_dir_name, csv_name) in layout.SPLIT_FILES.items():
        csv_path = fetch(base + csv_name, root_dir / csv_name, progress=progress)
        folder = root_dir / image_dir_name
        marker = root_dir / f".{image_dir_name}.complete"
        if not _is_unpacked(folder, marker, csv_path):
            zip_name = f"{image_dir_name}.zip"
            archive = fetch(base + zip_name, root_dir / zip_name, progress=progress)
            _unpack(archive, folder, progress=progress)
            marker.touch()
            archive.unlink()
        _verify_split(layout, split, folder, csv_path, marker)
    return root_dir


def _is_unpacked(folder: Path, marker: Path, csv_path: Path) -> bool:
    if marker.is_file() and folder.is_dir():
        return True
    # A copy unpacked by hand counts too, when it has one image per CSV row.
    if not folder.is_dir():
        return False
    from synergic.data.datasets.isic2016 import read_ground_truth

    try:
        rows = read_ground_truth(csv_path)
    except SynergicError:
        return False
    return bool(rows) and _count_jpegs(folder) == len(rows)


def _count_jpegs(folder: Path) -> int:
    # The one listing rule: a macOS ._ISIC_0000000.jpg sidecar beside the images is not one.
    return len(list_image_files(folder, extensions=[".jpg"], recursive=False))


def _unpack(archive: Path, folder: Path, *, progress: bool) -> None:
    """Unpack ``archive`` so that its images end up directly in ``folder``."""
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
                        f"written outside {folder.parent}"
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
        raise SynergicError(f"could not unpack {archive}: {error.strerror or error}") from None

    # The official archives hold one top folder named like the zip; accept a flat archive too.
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


def _verify_split(layout, split: str, folder: Path, csv_path: Path, marker: Path) -> None:
    redo = f"delete {folder.parent} and run 'synergic data download isic2016' again"
    try:
        rows = layout.read_ground_truth(csv_path)
    except SynergicError as error:
        marker.unlink(missing_ok=True)
        raise SynergicError(f"downloaded ISIC 2016 is damaged: {error}; {redo}") from None
    missing = [image_id for image_id, _ in rows if not (folder / f"{image_id}.jpg").is_file()]
    images = _count_jpegs(folder)
    if not rows or missing or images != len(rows):
        marker.unlink(missing_ok=True)
        detail = f", e.g. no {folder / (missing[0] + '.jpg')}" if missing else ""
        raise SynergicError(
            f"downloaded ISIC 2016 {split} data is incomplete: {images} images in {folder} "
            f"for {len(rows)} rows in {csv_path}{detail}; {redo}"
        )
