"""Fetching a MedMNIST ``.npz`` file, and checking it against its published MD5."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from synergic.errors import SynergicError

_CHUNK = 1 << 20


def download(url: str, dest: Path, *, md5: str | None = None, progress: bool = True) -> None:
    """Fetch ``url`` to ``dest``; with ``md5``, delete the file and fail when it does not match.

    Uses ``synergic.data.download.fetch`` when this synergic has it, :func:`fetch_with_urllib`
    otherwise.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        from synergic.data.download import fetch
    except ImportError:  # a synergic older than its download helper
        fetch = fetch_with_urllib
    fetch(url, dest, progress=progress)
    if md5:
        actual = file_md5(dest)
        if actual != md5.lower():
            dest.unlink(missing_ok=True)
            raise SynergicError(
                f"downloaded {dest.name} from {url} has MD5 {actual}, expected {md5}; the file was "
                "deleted: download again, or set data.options.md5 to the checksum your mirror "
                "publishes"
            )


def fetch_with_urllib(url: str, dest: Path, *, progress: bool = True) -> None:
    """Download ``url`` to ``dest`` through ``<dest>.part``, so ``dest`` is never half-written."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    part = dest.with_name(dest.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": "synergic-medmnist"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(part, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )
            with Progress(*columns, disable=not progress, transient=True) as bar:
                task = bar.add_task(f"downloading {dest.name}", total=total)
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    bar.update(task, advance=len(chunk))
        received = part.stat().st_size
        if total is not None and received != total:
            raise SynergicError(
                f"download of {url} stopped after {received} of {total} bytes; run again to retry"
            )
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        part.unlink(missing_ok=True)
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code} {error.reason}"
        else:
            reason = getattr(error, "reason", None) or error
        raise SynergicError(
            f"could not download {url} to {dest}: {reason}; check the address and your "
            f"connection, or download the file yourself and put it at {dest}"
        ) from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)


def file_md5(path: Path) -> str:
    """The hex MD5 of a file, read in chunks so multi-gigabyte files need no memory."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
