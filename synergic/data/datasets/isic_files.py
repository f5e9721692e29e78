"""What the ISIC challenge data sets share: reading their ground-truth CSVs, finding their images,
and pointing at official files unpacked in the wrong folder.

Used by :mod:`~synergic.data.datasets.isic2017` and :mod:`~synergic.data.datasets.isic2018` (and
open to the later years). The official CSVs have a header row whose first column is the image id;
they come with CRLF or LF line ends, with or without a UTF-8 byte-order mark and a final newline,
and all of these are read alike (the standard library's :mod:`csv`, ``encoding="utf-8-sig"``).
The CSV decides what is in a split: an image in the folder that no row names is ignored, a row
whose image is missing is an error.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

from synergic.data.listing import is_ignored
from synergic.errors import SynergicError

#: The end of an error about an official CSV's content: what to do about it.
FIX_OR_DOWNLOAD = "; fix the file or re-download it"

__all__ = [
    "FIX_OR_DOWNLOAD",
    "check_no_copy_nearby",
    "find_files",
    "image_paths",
    "indicator",
    "layout_hint",
    "one_hot_label",
    "read_table",
    "warn_once",
]


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


def read_table(csv_path: Path, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """The rows of an official ISIC CSV with a header, as ``(line number, {column: cell})``.

    ``columns`` are the columns that must be in the header (in any order; others are kept too);
    the first of them is the image id, which must be unique. Blank lines are skipped; cells are
    stripped of surrounding spaces.

    Raises:
        SynergicError: one line naming the file (and line): not a text file, a header without
            one of ``columns``, a row with fewer cells than the header, an image id twice.
    """
    rows: list[tuple[int, dict[str, str]]] = []
    first_line: dict[str, int] = {}
    try:
        # newline="" lets the csv module handle CRLF line ends; utf-8-sig drops a BOM.
        with open(csv_path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header: list[str] | None = None
            for cells in reader:
                line = reader.line_num
                if not cells or all(not cell.strip() for cell in cells):
                    continue
                cells = [cell.strip() for cell in cells]
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
                    raise SynergicError(
                        f"{csv_path}: image id {image_id} appears twice "
                        f"(lines {first_line[image_id]} and {line}){FIX_OR_DOWNLOAD}"
                    )
                first_line[image_id] = line
                rows.append((line, row))
    except UnicodeDecodeError:
        raise SynergicError(f"{csv_path} is not a text CSV file; re-download it") from None
    except csv.Error as error:
        raise SynergicError(f"{csv_path}: unreadable CSV ({error}); re-download it") from None
    except OSError as error:
        raise SynergicError(
            f"cannot read {csv_path}: {error.strerror or error}; check its permissions"
        ) from None
    return rows


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
        raise SynergicError(
            f"{title} not found at {root}{detail()}: run 'synergic data download {dataset}' "
            "or set data.root"
        )


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
