"""Images listed in CSV files with a header row: one CSV per split, an id column and a label column.

::

    image,label
    case_001,benign
    case_002,malignant

The image of a row is ``root/<id>``, tried as written and then with ``extension`` (or a common
image extension) appended.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from synergic.data import NoSuchSplit
from synergic.data.datasets.base import FileImageDataset, check_split_name
from synergic.errors import SynergicError

COMMON_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
"""Extensions tried, in order, when an id is not a file name and ``extension`` is not given."""


def csv_dataset(
    *,
    root: str | os.PathLike[str] | None,
    split: str,
    train_csv: str,
    test_csv: str,
    val_csv: str | None = None,
    id_column: str = "image",
    label_column: str = "label",
    extension: str | None = None,
    classes: Sequence[str] | None = None,
) -> FileImageDataset:
    """Images listed in CSV files, one per split (options: train_csv, test_csv, val_csv, ...).

    Args:
        root: folder holding the images (and the CSVs, when their paths are relative).
        train_csv, test_csv, val_csv: the CSV of each split; without ``val_csv`` the ``val`` split
            raises :class:`NoSuchSplit` and the framework carves one from ``train``.
        id_column: column naming the image (a path relative to ``root``, extension optional).
        label_column: column holding the class.
        extension: appended to ids that are not file names as written (e.g. ``"jpg"``).
        classes: the class names in label order. Labels may then also be written as class
            indices (``0``, ``1``). Without it, the classes are the sorted distinct labels of the
            train CSV (numerically when they are all integers).
    """
    check_split_name(split, "csv")
    if root is None:
        raise SynergicError("data set 'csv' needs data.root: the folder holding the images")
    root_dir = Path(root).expanduser()
    if not root_dir.is_dir():
        raise SynergicError(f"data set 'csv': data.root {root_dir} is not a folder")
    csv_option = {"train": train_csv, "val": val_csv, "test": test_csv}[split]
    if csv_option is None:
        raise NoSuchSplit("data set 'csv' has no val_csv")

    train_rows = _read_rows(_csv_path(root_dir, train_csv, "train_csv"), id_column, label_column)
    if classes is None:
        class_names = _classes_from_labels([label for _, _, label in train_rows])
    else:
        if isinstance(classes, str) or not all(isinstance(c, str) and c for c in classes):
            raise SynergicError(
                "data set 'csv': classes must be a list of class names, e.g. [benign, malignant]"
            )
        class_names = list(classes)
        if len(set(class_names)) != len(class_names):
            raise SynergicError(f"data set 'csv': classes repeat a name: {class_names}")
    if not class_names:
        raise SynergicError(f"data set 'csv': {train_csv} lists no images")

    csv_path = _csv_path(root_dir, csv_option, f"{split}_csv")
    rows = train_rows if split == "train" else _read_rows(csv_path, id_column, label_column)
    if not rows:
        raise SynergicError(f"data set 'csv': {csv_path} lists no images")
    _reject_duplicates(rows, csv_path)
    index_of = {name: index for index, name in enumerate(class_names)}
    ids, labels, paths = [], [], []
    suffixes = _extensions(extension)
    for line, image_id, raw_label in rows:
        label = index_of.get(raw_label)
        if label is None and classes is not None and raw_label.lstrip("-").isdigit():
            number = int(raw_label)
            label = number if 0 <= number < len(class_names) else None
        if label is None:
            indices = f" or 0..{len(class_names) - 1}" if classes is not None else ""
            raise SynergicError(
                f"{csv_path} line {line}: unknown label {raw_label!r} in column '{label_column}'; "
                f"classes: {', '.join(class_names)}{indices}"
            )
        ids.append(image_id)
        labels.append(label)
        paths.append(_find_image(root_dir, image_id, suffixes, csv_path, line))
    return FileImageDataset(class_names, ids, labels, paths, name=f"csv ({split})", source=csv_path)


def _csv_path(root: Path, value: str, option: str) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise SynergicError(f"data set 'csv': {option} must be a file path, got {value!r}")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = root / path
    if not path.is_file():
        raise SynergicError(f"data set 'csv': {option} file not found: {path}")
    return path


def _read_rows(path: Path, id_column: str, label_column: str) -> list[tuple[int, str, str]]:
    """``(line number, id, label)`` for each non-blank row."""
    rows = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            if header is None:
                raise SynergicError(f"{path} is empty; expected a header row naming the columns")
            header = [name.strip() for name in header]
            positions = []
            for column, option in ((id_column, "id_column"), (label_column, "label_column")):
                if column not in header:
                    raise SynergicError(
                        f"{path} has no column '{column}' (its columns: {', '.join(header)}); "
                        f"set data.options.{option}"
                    )
                positions.append(header.index(column))
            id_position, label_position = positions
            for cells in reader:
                line = reader.line_num
                if not cells or all(not cell.strip() for cell in cells):
                    continue
                if len(cells) <= max(id_position, label_position):
                    raise SynergicError(
                        f"{path} line {line}: {len(cells)} cells, but the header has {len(header)}"
                    )
                image_id = cells[id_position].strip()
                if not image_id:
                    raise SynergicError(f"{path} line {line}: empty '{id_column}'")
                rows.append((line, image_id, cells[label_position].strip()))
    except UnicodeDecodeError:
        raise SynergicError(f"{path} is not a UTF-8 text CSV file") from None
    except csv.Error as error:
        raise SynergicError(f"{path}: unreadable CSV ({error})") from None
    return rows


def _classes_from_labels(labels: list[str]) -> list[str]:
    distinct = set(labels)
    if all(label.lstrip("-").isdigit() for label in distinct):
        return sorted(distinct, key=int)  # "10" after "9", not after "1"
    return sorted(distinct)


def _extensions(extension: str | None) -> tuple[str, ...]:
    if extension is None:
        return COMMON_EXTENSIONS
    extension = extension.strip()
    if not extension.strip("."):
        raise SynergicError(f"data set 'csv': bad extension {extension!r}; use e.g. 'jpg'")
    return (extension if extension.startswith(".") else "." + extension,)


def _find_image(
    root: Path, image_id: str, suffixes: tuple[str, ...], csv_path: Path, line: int
) -> Path:
    as_written = root / image_id
    if as_written.is_file():
        return as_written
    for suffix in suffixes:
        candidate = root / (image_id + suffix)
        if candidate.is_file():
            return candidate
    tried = ", ".join(suffixes)
    raise SynergicError(
        f"image for '{image_id}' ({csv_path} line {line}) not found: no {as_written} "
        f"(also tried with {tried})"
    )


def _reject_duplicates(rows: list[tuple[int, str, str]], csv_path: Path) -> None:
    first_line: dict[str, int] = {}
    for line, image_id, _ in rows:
        if image_id in first_line:
            raise SynergicError(
                f"{csv_path}: image id '{image_id}' appears twice "
                f"(lines {first_line[image_id]} and {line})"
            )
        first_line[image_id] = line
