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
import warnings
from collections.abc import Sequence
from pathlib import Path

from synergic.data import NoSuchSplit
from synergic.data.datasets.base import FileImageDataset, check_split_name
from synergic.data.listing import ImageListingWarning, ignored_reason
from synergic.errors import SynergicError, did_you_mean

COMMON_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
"""Extensions tried, in order, when an id is not a file name and ``extension`` is not given."""


def csv_dataset(
    root: str | os.PathLike[str] | None,
    *,
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

    Labels are read without their surrounding spaces. ``ids`` are the values of ``id_column``.

    Raises:
        SynergicError: a missing CSV, column or image; a blank or missing label (naming the rows);
            one label spelled two ways, e.g. ``Melanoma`` and ``melanoma `` (naming the rows, with
            a "did you mean"); a label that is not a class; an id twice, or two rows naming the
            same file; a row naming a file that is never an image (a macOS ``._`` sidecar).
        NoSuchSplit: ``split="val"`` without ``val_csv``.

    Warns:
        ImageListingWarning: rows of the val or test CSV name the same files as rows of the train
        (or val) CSV.
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

    train_path = _csv_path(root_dir, train_csv, "train_csv")
    given = _check_classes(classes) if classes is not None else None
    train_rows = _read_rows(train_path, id_column, label_column)
    _check_labels(train_rows, train_path, label_column, given)
    if given is None:
        class_names = _classes_from_labels([label.strip() for _, _, label in train_rows])
        _warn_about_rare_look_alikes(train_rows, train_path)
    else:
        class_names = given
    if not class_names:
        raise SynergicError(f"data set 'csv': {train_csv} lists no images")

    csv_path = _csv_path(root_dir, csv_option, f"{split}_csv")
    rows = train_rows if split == "train" else _read_rows(csv_path, id_column, label_column)
    if not rows:
        raise SynergicError(f"data set 'csv': {csv_path} lists no images")
    _reject_duplicates(rows, csv_path)
    if split != "train":
        _check_labels(rows, csv_path, label_column, given)
    labels = _labels(rows, class_names, csv_path, label_column, indices=classes is not None)
    paths = _image_paths(root_dir, rows, _extensions(extension), csv_path)
    ids = [image_id for _, image_id, _ in rows]
    if split != "train":
        earlier = [(train_path, train_rows)]
        if split == "test" and val_csv is not None:
            val_path = _csv_path(root_dir, val_csv, "val_csv")
            earlier.append((val_path, _read_rows(val_path, id_column, label_column)))
        _warn_about_shared_files(root_dir, paths, csv_path, earlier, _extensions(extension))
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
    """``(line number, id, label)`` for each non-blank row; ``label`` as written, spaces and all,
    and ``""`` when the row ends before the label column."""
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
                if len(cells) <= id_position:
                    raise SynergicError(
                        f"{path} line {line}: {len(cells)} cells, but the header has {len(header)}"
                    )
                image_id = cells[id_position].strip()
                if not image_id:
                    raise SynergicError(f"{path} line {line}: empty '{id_column}'")
                label = cells[label_position] if label_position < len(cells) else ""
                rows.append((line, image_id, label))
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


def _locate(root: Path, image_id: str, suffixes: tuple[str, ...]) -> Path | None:
    """The image of ``image_id``: ``root/<id>`` as written, else with each suffix appended."""
    for candidate in [root / image_id] + [root / (image_id + suffix) for suffix in suffixes]:
        if candidate.is_file():
            return candidate
    return None


def _image_paths(
    root: Path, rows: list[tuple[int, str, str]], suffixes: tuple[str, ...], csv_path: Path
) -> list[Path]:
    """The image file of every row. A row whose file is missing, is a file that is never an image
    (a macOS ``._`` sidecar, ``Thumbs.db``: see :mod:`synergic.data.listing`), or is the same
    file as an earlier row's (``a`` and ``a.jpg``, or through a link) is a one-line error."""
    paths: list[Path] = []
    first_line: dict[str, int] = {}
    for line, image_id, _ in rows:
        path = _locate(root, image_id, suffixes)
        if path is None:
            raise SynergicError(
                f"image for '{image_id}' ({csv_path} line {line}) not found: no {root / image_id} "
                f"(also tried with {', '.join(suffixes)})"
            )
        reason = ignored_reason(path.name)
        if reason is not None:
            raise SynergicError(
                f"{csv_path} line {line}: '{image_id}' is {reason} ({path}), not an image; "
                "remove the row"
            )
        real = os.path.realpath(path)
        if real in first_line:
            raise SynergicError(
                f"{csv_path}: lines {first_line[real]} and {line} name the same file {path}; "
                "remove one of the rows"
            )
        first_line[real] = line
        paths.append(path)
    return paths


def _lines(lines: list[int], shown: int = 5) -> str:
    """``line 4``, ``lines 4, 9 (2 rows)`` or ``lines 4, 9, 11, 12, 15 and 3 more (8 rows)``."""
    if len(lines) == 1:
        return f"line {lines[0]}"
    listed = ", ".join(map(str, lines[:shown]))
    more = f" and {len(lines) - shown} more" if len(lines) > shown else ""
    return f"lines {listed}{more} ({len(lines)} rows)"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _check_classes(classes: Sequence[str]) -> list[str]:
    if isinstance(classes, str) or not all(isinstance(c, str) and c.strip() for c in classes):
        raise SynergicError(
            "data set 'csv': classes must be a list of class names, e.g. [benign, malignant]"
        )
    names = list(classes)
    for name in names:
        if name != name.strip():
            raise SynergicError(
                f"data set 'csv': class {name!r} in data.options.classes has surrounding spaces; "
                f"write it as '{name.strip()}'"
            )
    keys = [name.casefold() for name in names]
    if len(set(keys)) != len(keys):
        raise SynergicError(
            f"data set 'csv': classes repeat a name (letter case aside): {names}"
        )
    return names


def _check_labels(
    rows: list[tuple[int, str, str]], csv_path: Path, label_column: str,
    classes: list[str] | None,
) -> None:
    """Blank or missing labels, and labels spelled two ways (``Melanoma`` and ``melanoma ``),
    are one-line errors naming the rows."""
    blank = [line for line, _, label in rows if not label.strip()]
    if blank:
        raise SynergicError(
            f"{csv_path}: no label in column '{label_column}' on {_lines(blank)}; "
            "write each image's class there, or remove the rows"
        )
    spellings: dict[str, dict[str, list[int]]] = {}
    for line, _, label in rows:
        spellings.setdefault(label.strip().casefold(), {}).setdefault(label, []).append(line)
    for variants in spellings.values():
        if len(variants) < 2:
            continue

        def preference(spelling: str) -> tuple:
            # A class of data.options.classes first, then the most rows, then no stray spaces.
            known = classes is not None and spelling.strip() in classes
            return known, len(variants[spelling]), spelling == spelling.strip()

        best = max(variants, key=preference)
        stray = min((v for v in variants if v != best), key=lambda v: len(variants[v]))
        raise SynergicError(
            f"{csv_path}: label {stray!r} on {_lines(variants[stray])} and {best!r} "
            f"on {_count(len(variants[best]), 'row')} differ only in letter case or surrounding "
            "spaces "
            f"(did you mean {best.strip()!r}?); write one spelling in every row"
        )


def _warn_about_rare_look_alikes(rows: list[tuple[int, str, str]], csv_path: Path) -> None:
    """One warning line when a class of the train CSV has very few rows and a name close to a
    common class (``naevus`` once among 300 ``nevus``): most likely a typo that would silently
    become a class of its own. ``data.options.classes`` turns it into an error."""
    import difflib
    import warnings
    from collections import Counter

    counts = Counter(label.strip() for _, _, label in rows)
    common = [name for name, count in counts.items() if count > 2]
    for name, count in counts.items():
        if count > 2 or name.lstrip("-").isdigit():
            continue
        close = difflib.get_close_matches(name, [c for c in common if c != name], n=1, cutoff=0.75)
        if close:
            lines = [line for line, _, label in rows if label.strip() == name]
            warnings.warn(
                f"{csv_path}: label {name!r} on {_lines(lines)} is a class of "
                f"{_count(count, 'image')} and looks like {close[0]!r} "
                f"({_count(counts[close[0]], 'image')}): a typo? List the classes in "
                "data.options.classes to make any other label an error",
                stacklevel=3,
            )


def _labels(
    rows: list[tuple[int, str, str]], class_names: list[str], csv_path: Path, label_column: str,
    *, indices: bool,
) -> list[int]:
    """The class index of every row; an unknown label is an error naming its rows."""
    index_of = {name: index for index, name in enumerate(class_names)}
    labels: list[int] = []
    unknown: dict[str, list[int]] = {}
    for line, _, raw_label in rows:
        text = raw_label.strip()
        label = index_of.get(text)
        if label is None and indices and text.lstrip("-").isdigit():
            number = int(text)
            label = number if 0 <= number < len(class_names) else None
        if label is None:
            unknown.setdefault(text, []).append(line)
        else:
            labels.append(label)
    if unknown:
        text, lines = next(iter(unknown.items()))
        numbers = f" or 0..{len(class_names) - 1}" if indices else ""
        given = " of data.options.classes" if indices else ""
        raise SynergicError(
            f"{csv_path} {_lines(lines)}: unknown label {text!r} in column '{label_column}'"
            f"{did_you_mean(text, class_names)}; classes{given}: {', '.join(class_names)}{numbers}"
        )
    return labels


def _warn_about_shared_files(
    root: Path, paths: list[Path], csv_path: Path,
    earlier: list[tuple[Path, list[tuple[int, str, str]]]], suffixes: tuple[str, ...],
) -> None:
    """One warning line when rows of this split name the same files as rows of an earlier split
    (train, then val): those images are not held out."""
    mine = {os.path.realpath(path): path for path in paths}
    for other_csv, other_rows in earlier:
        shared = []
        for _, image_id, _ in other_rows:
            path = _locate(root, image_id, suffixes)
            if path is not None and os.path.realpath(path) in mine:
                shared.append(mine[os.path.realpath(path)])
        if shared:
            warnings.warn(
                f"data set 'csv': {len(shared)} of the {len(paths)} images of {csv_path} are also "
                f"listed in {other_csv} (e.g. {shared[0]}), so they are not held out; remove them "
                "from one of the CSVs",
                ImageListingWarning,
                stacklevel=3,
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
