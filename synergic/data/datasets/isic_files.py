"""What the ISIC challenge data sets share: reading their ground-truth CSVs, finding their images,
pointing at official files unpacked in the wrong folder, opening a split as a
:class:`~synergic.data.datasets.base.FileImageDataset`, lesion groups, and the steps of a download.

Used by :mod:`~synergic.data.datasets.isic2016` to :mod:`~synergic.data.datasets.isic2020`; each
of those keeps its own layout, label parsing and quirks, and calls these for the rest. The
official CSVs (from 2017 on) have a header row whose first column is the image id;
they come with CRLF or LF line ends, with or without a UTF-8 byte-order mark and a final newline,
and all of these are read alike (the standard library's :mod:`csv`, ``encoding="utf-8-sig"``).
The CSV decides what is in a split: an image in the folder that no row names is ignored, a row
whose image is missing is an error.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from synergic.data.datasets.base import FileImageDataset
from synergic.data.listing import is_ignored
from synergic.data.paths import default_data_root
from synergic.errors import SynergicError

#: The end of an error about an official CSV's content: what to do about it.
FIX_OR_DOWNLOAD = "; fix the file or re-download it"

__all__ = [
    "FIX_OR_DOWNLOAD",
    "check_no_copy_nearby",
    "csv_rows",
    "download_hint",
    "download_splits",
    "fetch_split_images",
    "fetch_table",
    "find_files",
    "image_paths",
    "indicator",
    "layout_hint",
    "lesion_groups",
    "missing_split_files",
    "one_hot_label",
    "prepare_download",
    "read_lesion_ids",
    "read_table",
    "root_folder",
    "split_dataset",
    "twice_error",
    "warn_once",
]


def root_folder(root: str | os.PathLike[str] | None, dataset: str) -> Path:
    """``root`` with ``~`` expanded, or :func:`synergic.data.paths.default_data_root`
    ``(dataset)`` when it is None; not created."""
    return Path(root).expanduser() if root is not None else default_data_root(dataset)


def download_hint(dataset: str) -> str:
    """How to get a data set's files, as the end of an error message."""
    return f"run 'synergic data download {dataset}' or set data.root"


_WARNED: set[tuple[str, str]] = set()


def warn_once(message: str, *, source: Path, stacklevel: int = 2) -> None:
    """``warnings.warn(message)``, once per process for a data folder ``source``: a command
    opens a data set's split more than once (``synergic cv`` plans the folds, then each fold
    run opens its data), and a note about the files, such as the duplicates dropped, says
    nothing new the second time. Python's own once-per-location rule does not hold: every
    ``warnings.catch_warnings`` block resets it."""
    import warnings

    key = (str(Path(source).resolve()), message)
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(message, stacklevel=stacklevel + 1)


def csv_rows(csv_path: Path) -> Iterator[tuple[int, list[str]]]:
    """The rows of a CSV file as ``(line number, cells)``, cells stripped of surrounding spaces,
    blank rows skipped; CRLF or LF line ends, with or without a UTF-8 byte-order mark (the
    standard library's :mod:`csv`, ``encoding="utf-8-sig"``).

    Raises:
        SynergicError: one line naming the file: not a text file, not a CSV, unreadable.
    """
    try:
        # newline="" lets the csv module handle CRLF line ends; utf-8-sig drops a BOM.
        with open(csv_path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            for cells in reader:
                if cells and any(cell.strip() for cell in cells):
                    yield reader.line_num, [cell.strip() for cell in cells]
    except UnicodeDecodeError:
        raise SynergicError(f"{csv_path} is not a text CSV file; re-download it") from None
    except csv.Error as error:
        raise SynergicError(f"{csv_path}: unreadable CSV ({error}); re-download it") from None
    except OSError as error:
        raise SynergicError(
            f"cannot read {csv_path}: {error.strerror or error}; check its permissions"
        ) from None


def read_table(csv_path: Path, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """The rows of an official ISIC CSV with a header, as ``(line number, {column: cell})``.

    ``columns`` are the columns that must be in the header (in any order; others are kept too);
    the first of them is the image id, which must be unique. Blank lines are skipped; cells are
    stripped of surrounding spaces (:func:`csv_rows`).

    Raises:
        SynergicError: one line naming the file (and line): not a text file, a header without
            one of ``columns``, a row with fewer cells than the header, an image id twice.
    """
    rows: list[tuple[int, dict[str, str]]] = []
    first_line: dict[str, int] = {}
    header: list[str] | None = None
    for line, cells in csv_rows(csv_path):
        if header is None:
            absent = [column for column in columns if column not in cells]
            if absent:
                raise SynergicError(
                    f"{csv_path} line {line}: expected a header with the columns "
                    f"{','.join(columns)}, got {','.join(cells)!r} (missing {absent[0]}); "
                    "re-download it"
                )
            header = cells
            continue
        if len(cells) < len(header):
            raise SynergicError(
                f"{csv_path} line {line}: {len(cells)} cells for the {len(header)} "
                f"columns of the header ({','.join(header)}){FIX_OR_DOWNLOAD}"
            )
        row = dict(zip(header, cells))
        image_id = row[columns[0]]
        if image_id in first_line:
            raise twice_error(csv_path, image_id, first_line[image_id], line)
        first_line[image_id] = line
        rows.append((line, row))
    return rows


def twice_error(csv_path: Path, image_id: str, first_line: int, line: int) -> SynergicError:
    """The one-line error for an image id that a ground-truth CSV lists on two lines."""
    return SynergicError(
        f"{csv_path}: image id {image_id} appears twice (lines {first_line} and {line})"
        f"{FIX_OR_DOWNLOAD}"
    )


def indicator(value: str, *, csv_path: Path, line: int, column: str) -> int:
    """0 or 1 for a ground-truth cell written ``0``/``1``/``0.0``/``1.0``.

    Raises:
        SynergicError: any other value, naming the file, line and column.
    """
    try:
        number = float(value)
    except ValueError:
        number = None
    if number not in (0.0, 1.0):
        raise SynergicError(
            f"{csv_path} line {line}: {column} is {value!r}, expected 0.0 or 1.0{FIX_OR_DOWNLOAD}"
        )
    return int(number)


def one_hot_label(
    row: dict[str, str], classes: Sequence[str], *, csv_path: Path, line: int
) -> int:
    """The class index of a one-hot ground-truth row (``MEL,NV,...`` columns of 0.0/1.0).

    Raises:
        SynergicError: a cell that is not 0/1, or a row with no 1 or with several, naming the
            file, the line and the image.
    """
    hot = [
        index for index, name in enumerate(classes)
        if indicator(row[name], csv_path=csv_path, line=line, column=name)
    ]
    if len(hot) != 1:
        image_id = next(iter(row.values()))
        which = "no class" if not hot else " and ".join(classes[index] for index in hot)
        raise SynergicError(
            f"{csv_path} line {line}: {image_id} is labelled {which}; each row needs exactly one "
            f"1.0 among {','.join(classes)}{FIX_OR_DOWNLOAD}"
        )
    return hot[0]


def image_paths(
    ids: Sequence[str], image_dir: Path, *, csv_path: Path, title: str, hint: str,
    extension: str = ".jpg",
) -> list[Path]:
    """``image_dir / <id><extension>`` for each id; every one must exist.

    Raises:
        SynergicError: the first missing image, naming it and ``csv_path``; when the images were
            unpacked one folder too deep (``image_dir/<image_dir name>/``), saying where to move
            them; else ending with ``hint`` (how to get the files).
    """
    paths = [image_dir / f"{image_id}{extension}" for image_id in ids]
    for path in paths:
        if path.is_file():
            continue
        nested = image_dir / image_dir.name
        if (nested / path.name).is_file():
            raise SynergicError(
                f"{title} image {path} is missing (listed in {csv_path}): the images were "
                f"unpacked one folder too deep, into {nested}; move them up into {image_dir}"
            )
        raise SynergicError(f"{title} image {path} is missing (listed in {csv_path}); {hint}")
    return paths


def find_files(
    root: Path,
    missing: Callable[[Path], Sequence[str]],
    required: int,
    *,
    title: str,
    dataset: str,
    download: Callable[[Path], object] | None = None,
) -> None:
    """Make sure ``root`` holds a split's official files, downloading them with ``download(root)``
    when given and they are missing, as the ISIC factories do.

    Files found near ``root`` instead (:func:`layout_hint`) are an error that says where they are,
    and are not downloaded again.

    Raises:
        SynergicError: ``"<title> not found at <root>"`` with the missing file (when some are
            there) and where the files are, or how to get them
            (``synergic data download <dataset>``, ``data.root``).
    """
    absent = missing(root)

    def detail() -> str:
        return "" if len(absent) == required else f" (missing {absent[0]})"

    if absent:
        hint = layout_hint(root, missing, required)
        if hint:
            raise SynergicError(f"{title} not found at {root}{detail()}{hint}")
        if download is not None:
            download(root)
            absent = missing(root)
    if absent:
        raise SynergicError(f"{title} not found at {root}{detail()}: {download_hint(dataset)}")


def missing_split_files(root: Path, image_dir_name: str, csv_name: str) -> list[str]:
    """Which of a split's image folder and ground-truth CSV (names relative to ``root``) are not
    in ``root``, for :func:`find_files` and :func:`layout_hint`."""
    missing = []
    if not (root / image_dir_name).is_dir():
        missing.append(image_dir_name)
    if not (root / csv_name).is_file():
        missing.append(csv_name)
    return missing


def split_dataset(
    classes: Sequence[str],
    rows: Sequence[tuple[str, int]],
    image_dir: Path,
    csv_path: Path,
    *,
    name: str,
    title: str,
    dataset: str,
) -> FileImageDataset:
    """A split as a :class:`~synergic.data.datasets.base.FileImageDataset` from its ground-truth
    ``rows`` (``(image id, class index)`` in file order, read from ``csv_path``) and its image
    folder: image ``image_dir/<id>.jpg`` per row (:func:`image_paths`), ``source=csv_path``.

    Raises:
        SynergicError: no rows (``csv_path`` lists no images); an image missing, as
            :func:`image_paths` says.
    """
    if not rows:
        raise SynergicError(f"{csv_path} lists no images; re-download it")
    ids = [image_id for image_id, _ in rows]
    paths = image_paths(
        ids, image_dir, csv_path=csv_path, title=title, hint=download_hint(dataset)
    )
    return FileImageDataset(
        classes, ids, [label for _, label in rows], paths, name=name, source=csv_path
    )


def read_lesion_ids(csv_path: Path) -> dict[str, str]:
    """``{image id: lesion id}`` from a CSV with the columns ``image`` and ``lesion_id`` (ISIC
    2018's lesion groupings, ISIC 2019's metadata); a blank lesion id is left out.

    Raises:
        SynergicError: not such a header, an image id twice (:func:`read_table`).
    """
    return {
        row["image"]: row["lesion_id"]
        for _, row in read_table(csv_path, ("image", "lesion_id"))
        if row["lesion_id"]
    }


def lesion_groups(
    ids: Sequence[str], csv_path: Path, *, title: str, dataset: str
) -> dict[str, list[str]] | None:
    """``{"lesion": [lesion id per image]}`` for the training images ``ids`` from the lesion ids
    in ``csv_path`` (:func:`read_lesion_ids`); an image without one is a lesion of its own.

    Without the file: None, and one warning (:func:`warn_once`) that images of one lesion can
    then fall on both sides of a validation split or cross-validation fold, and how to get it.

    Raises:
        SynergicError: the file is not in its official format (:func:`read_lesion_ids`).
    """
    if not csv_path.is_file():
        warn_once(
            f"{title}: no {csv_path.name} in {csv_path.parent}, so the training images have no "
            "lesion groups and images of one lesion can fall on both sides of a validation split "
            f"or cross-validation fold; download it with 'synergic data download {dataset}'",
            source=csv_path.parent,
            stacklevel=3,
        )
        return None
    lesions = read_lesion_ids(csv_path)
    return {"lesion": [lesions.get(image_id) or image_id for image_id in ids]}


# ------------------------------------------------------------------------------------ downloads


def prepare_download(
    root: str | os.PathLike[str] | None,
    base_url: str,
    missing: Callable[[Path], Sequence[str]],
    required: int,
    *,
    title: str,
    dataset: str,
) -> tuple[Path, str]:
    """The first steps of a download: refuse when a complete copy lies near ``root``
    (:func:`check_no_copy_nearby`), then create ``root``
    (:func:`synergic.data.download.data_root`). Returns ``(root folder, base_url ending in
    "/")``.

    Raises:
        SynergicError: a copy near ``root``; ``root`` cannot be created.
    """
    from synergic.data.download import data_root

    check_no_copy_nearby(
        root_folder(root, dataset), missing, required, title=title, dataset=dataset
    )
    base = base_url if base_url.endswith("/") else base_url + "/"
    return data_root(root, dataset), base


def fetch_split_images(
    base_url: str,
    folder: Path,
    csv_path: Path,
    read_ids: Callable[[Path], Sequence[str]],
    *,
    what: str,
    dataset: str,
    progress: bool = True,
) -> Path:
    """Make sure ``folder`` holds a split's images, one per row of its ground truth
    ``csv_path`` (``read_ids(csv_path)``, every row, also those the data set leaves out):
    :func:`synergic.data.download.fetch_unpacked` (``<base_url><folder name>.zip``, skipped for a
    copy unpacked by hand with one image per row), then
    :func:`synergic.data.download.verify_images`. Returns ``folder``.

    Raises:
        SynergicError: a failed or damaged download; a folder short of images, naming ``what``
            (e.g. ``"ISIC 2017 val data"``).
    """
    from synergic.data.download import fetch_unpacked, has_one_image_per_row, verify_images

    def ids() -> Sequence[str]:
        return read_ids(csv_path)

    folder = fetch_unpacked(
        base_url, folder, progress=progress,
        complete=lambda unpacked: has_one_image_per_row(unpacked, ids),
    )
    verify_images(folder, ids, what=what, source=csv_path, dataset=dataset)
    return folder


def download_splits(
    root: str | os.PathLike[str] | None,
    base_url: str,
    split_files: dict[str, tuple[str, str]],
    read_ids: Callable[[Path], Sequence[str]],
    *,
    title: str,
    dataset: str,
    progress: bool = True,
    optional: Sequence[str] = (),
) -> Path:
    """Download a data set published as an image archive and a ground-truth CSV per split
    (ISIC 2016, 2017, 2019): ``split_files`` is ``{split: (image folder, CSV)}``, names relative
    to ``root``. First :func:`prepare_download` (a copy near ``root`` lacking nothing but the
    ``optional`` files counts as complete); then per split the CSV
    (:func:`synergic.data.download.fetch`) and the images (:func:`fetch_split_images`, ``what``
    being ``"<title> <split> data"``). Returns the root folder.

    Raises:
        SynergicError: a complete copy near ``root``; a failed or damaged download; in one line.
    """
    from synergic.data.download import fetch

    def missing(folder: Path) -> list[str]:
        return [
            name for files in split_files.values()
            for name in missing_split_files(folder, *files) if name not in optional
        ]

    root_dir, base = prepare_download(
        root, base_url, missing, 2 * len(split_files) - len(optional), title=title,
        dataset=dataset,
    )
    for split, (image_dir_name, csv_name) in split_files.items():
        fetch_split_images(
            base, root_dir / image_dir_name,
            fetch(base + csv_name, root_dir / csv_name, progress=progress), read_ids,
            what=f"{title} {split} data", dataset=dataset, progress=progress,
        )
    return root_dir


def fetch_table(
    base_url: str,
    path: Path,
    read: Callable[[Path], object],
    *,
    what: str,
    dataset: str,
    progress: bool = True,
) -> Path:
    """Fetch the official file ``<base_url><path name>`` to ``path``
    (:func:`synergic.data.download.fetch`, nothing when it is there) and check it with
    ``read(path)``; a file that ``read`` refuses is deleted. Returns ``path``.

    Raises:
        SynergicError: a failed download; ``"downloaded <what> is damaged and was deleted:
            <read's error>"`` and to run the download again.
    """
    from synergic.data.download import fetch

    base = base_url if base_url.endswith("/") else base_url + "/"
    fetched = fetch(base + path.name, path, progress=progress)
    try:
        read(fetched)
    except SynergicError as error:
        fetched.unlink()
        raise SynergicError(
            f"downloaded {what} is damaged and was deleted: {error}; run "
            f"'synergic data download {dataset}' again"
        ) from None
    return fetched


def check_no_copy_nearby(
    root: Path,
    missing: Callable[[Path], Sequence[str]],
    required: int,
    *,
    title: str,
    dataset: str,
    limit: int = 500,
) -> None:
    """Before a download into ``root``: refuse when ``root`` holds none of the official files
    while a folder near it (where :func:`layout_hint` looks: the folder above, the folders one
    and two levels below) holds a complete copy, i.e. one that ``missing`` finds nothing missing
    in. So a copy unpacked one folder deeper is not downloaded a second time (gigabytes); the
    data sets' loaders point at it the same way. A ``root`` that holds some of the files (an
    interrupted download) is completed as usual.

    Raises:
        SynergicError: one line naming the folder that holds the copy and the two ways to use it
            (``data.root``, ``--root``); nothing has been fetched.
    """
    if len(missing(root)) < required:
        return
    holder = _holder(root, missing, required, limit)
    if holder is None or missing(holder):
        return
    raise SynergicError(
        f"{title} is already in {holder} (every official file), not in {root}: set data.root to "
        f"{holder}, or run 'synergic data download {dataset} --root {holder}' to check that copy; "
        "nothing was downloaded"
    )


def layout_hint(
    root: Path, missing: Callable[[Path], Sequence[str]], required: int, *, limit: int = 500
) -> str:
    """Where the official files are when they are not in ``root``, as the end of an error message
    (``"; the official files are in X: set data.root to X"``), or ``""`` when they are nowhere
    near.

    ``missing(folder)`` lists which of the ``required`` official files ``folder`` lacks. Looked
    for: the folder above ``root`` (``data.root`` set to the image folder itself), the folders one
    and two levels below it (an archive unpacked into a folder of its own), skipping hidden and
    system folders (:func:`synergic.data.listing.is_ignored`) and looking at no more than
    ``limit`` folders per level; and a ``root`` inside a ``__MACOSX`` folder, which holds only
    macOS metadata. A ``__MACOSX`` folder beside the files is mentioned too. The folder holding
    the most of the files wins.
    """
    macosx = next((i for i, part in enumerate(root.parts) if part.lower() == "__macosx"), None)
    if macosx is not None:
        outside = Path(*root.parts[:macosx])
        holder = _holder(outside, missing, required, limit) or outside
        return (
            f": data.root is inside a __MACOSX folder, which holds macOS metadata (._ files), "
            f"not images; set data.root to {holder}"
        )
    holder = _holder(root, missing, required, limit)
    if holder is None:
        return ""
    beside = [folder for folder in (root, holder.parent) if (folder / "__MACOSX").is_dir()]
    note = (
        f" (the __MACOSX folder in {beside[0]} is macOS metadata, not images: ignore or delete it)"
        if beside else ""
    )
    return f"; the official files are in {holder}{note}: set data.root to {holder}"


def _holder(
    root: Path, missing: Callable[[Path], Sequence[str]], required: int, limit: int
) -> Path | None:
    """The folder near ``root`` (not ``root`` itself) holding the most of the required files."""
    candidates = [root.parent] if root.parent != root else []
    level = [root] if root.is_dir() else []
    for _ in range(2):
        below = []
        for folder in level:
            try:
                entries = sorted(folder.iterdir())[:limit]
            except OSError:
                continue
            below += [entry for entry in entries if not is_ignored(entry) and entry.is_dir()]
        candidates += below[:limit]
        level = below[:limit]
    scored = [(required - len(missing(folder)), folder) for folder in candidates]
    best = max((score for score, _ in scored), default=0)
    return next((folder for score, folder in scored if score == best), None) if best else None
