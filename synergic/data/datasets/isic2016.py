"""ISIC 2016 skin lesion classification (ISBI 2016 challenge, Part 3): benign or malignant.

The data set of the SDL paper: 900 training and 379 test dermoscopy images. The official download
unpacks to::

    ISBI2016_ISIC_Part3_Training_Data/ISIC_0000000.jpg ...
    ISBI2016_ISIC_Part3_Training_GroundTruth.csv
    ISBI2016_ISIC_Part3_Test_Data/ISIC_0000003.jpg ...
    ISBI2016_ISIC_Part3_Test_GroundTruth.csv

The CSVs have no header, CRLF line ends and no final newline; the training file says
``benign``/``malignant``, the test file ``0.0``/``1.0``. Both spellings (and ``0``/``1``) are
accepted in either file. The CSV decides what is in a split: an image in the folder that no CSV
row names is ignored.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from synergic.data import NoSuchSplit
from synergic.data.datasets.base import FileImageDataset, check_split_name
from synergic.data.paths import default_data_root
from synergic.errors import SynergicError

CLASSES = ["benign", "malignant"]
"""Class names; ``malignant`` (index 1) is the positive class."""

TRAIN_IMAGES = "ISBI2016_ISIC_Part3_Training_Data"
TRAIN_CSV = "ISBI2016_ISIC_Part3_Training_GroundTruth.csv"
TEST_IMAGES = "ISBI2016_ISIC_Part3_Test_Data"
TEST_CSV = "ISBI2016_ISIC_Part3_Test_GroundTruth.csv"

SPLIT_FILES = {"train": (TRAIN_IMAGES, TRAIN_CSV), "test": (TEST_IMAGES, TEST_CSV)}
"""For each split: its image folder and its ground-truth CSV, relative to the data root."""

BASE_URL = "https://isic-challenge-data.s3.amazonaws.com/2016/"
"""Where the ISIC challenge publishes the 2016 files."""

DOWNLOAD_FILES = (
    f"{TRAIN_IMAGES}.zip",
    TRAIN_CSV,
    f"{TEST_IMAGES}.zip",
    TEST_CSV,
)
"""The four official files of ISIC 2016 Part 3 (lesion classification)."""

_LABEL_WORDS = {"benign": 0, "malignant": 1}
_DOWNLOAD_HINT = "run 'synergic data download isic2016' or set data.root"


def isic2016(
    root: str | os.PathLike[str] | None = None, *, split: str, download: bool = False
) -> FileImageDataset:
    """ISIC 2016 skin lesions, benign or malignant: the SDL paper's data set (options: download).

    Splits ``train`` and ``test``; there is no ``val`` (:class:`NoSuchSplit`).
    ``root`` defaults to :func:`synergic.data.paths.default_data_root` ``("isic2016")``;
    ``download=True`` fetches the official files there first when they are missing.
    """
    check_split_name(split, "isic2016")
    if split == "val":
        raise NoSuchSplit("isic2016 has no validation split")
    root_dir = Path(root).expanduser() if root is not None else default_data_root("isic2016")
    image_dir_name, csv_name = SPLIT_FILES[split]
    missing = missing_files(root_dir, split)
    if missing:
        # Found elsewhere (unzipped one folder too deep, say): say where rather than download.
        hint = layout_hint(root_dir, split)
        if hint:
            detail = "" if len(missing) == 2 else f" (missing {missing[0]})"
            raise SynergicError(f"ISIC 2016 not found at {root_dir}{detail}{hint}")
    if missing and download:
        globals()["download"](root_dir)  # this module's download(), not the argument
        missing = missing_files(root_dir, split)
    if missing:
        detail = "" if len(missing) == 2 else f" (missing {missing[0]})"
        raise SynergicError(f"ISIC 2016 not found at {root_dir}{detail}: {_DOWNLOAD_HINT}")
    return read_split(root_dir / csv_name, root_dir / image_dir_name, split=split)


def layout_hint(root: Path, split: str, *, limit: int = 500) -> str:
    """Where the split's official files are when they are not in ``root``, as the end of an error
    message (``"; they are in X: set data.root to X"``), or ``""`` when they are nowhere near:
    :func:`synergic.data.datasets.isic_files.layout_hint` for this split's image folder and CSV.
    """
    from synergic.data.datasets.isic_files import layout_hint as find_nearby

    return find_nearby(root, lambda folder: missing_files(folder, split), 2, limit=limit)


def missing_files(root: Path, split: str) -> list[str]:
    """Which of the split's image folder and CSV are not in ``root``."""
    image_dir_name, csv_name = SPLIT_FILES[split]
    missing = []
    if not (root / image_dir_name).is_dir():
        missing.append(image_dir_name)
    if not (root / csv_name).is_file():
        missing.append(csv_name)
    return missing


def parse_label(value: str) -> int | None:
    """0 for ``benign``/``0``/``0.0``, 1 for ``malignant``/``1``/``1.0``, None otherwise."""
    word = value.strip().lower()
    if word in _LABEL_WORDS:
        return _LABEL_WORDS[word]
    try:
        number = float(word)
    except ValueError:
        return None
    if number == 0.0:
        return 0
    if number == 1.0:
        return 1
    return None


def read_ground_truth(csv_path: Path) -> list[tuple[str, int]]:
    """The ``(image id, label)`` rows of an official ground-truth CSV, in file order."""
    rows: list[tuple[str, int]] = []
    first_line: dict[str, int] = {}
    try:
        # newline="" lets the csv module handle the CRLF line ends; utf-8-sig drops a BOM.
        with open(csv_path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            for cells in reader:
                line = reader.line_num
                if not cells or all(not cell.strip() for cell in cells):
                    continue
                if len(cells) < 2:
                    raise SynergicError(
                        f"{csv_path} line {line}: expected 'image_id,label', "
                        f"got {','.join(cells)!r}; fix the file or re-download it"
                    )
                image_id, raw_label = cells[0].strip(), cells[1].strip()
                label = parse_label(raw_label)
                if label is None:
                    if line == 1 and not image_id.upper().startswith("ISIC_"):
                        continue  # a header row, which the official files do not have
                    raise SynergicError(
                        f"{csv_path} line {line}: unknown label {raw_label!r} for {image_id}; "
                        "expected benign/malignant or 0/1; fix the file or re-download it"
                    )
                if image_id in first_line:
                    raise SynergicError(
                        f"{csv_path}: image id {image_id} appears twice "
                        f"(lines {first_line[image_id]} and {line}); fix the file or re-download it"
                    )
                first_line[image_id] = line
                rows.append((image_id, label))
    except UnicodeDecodeError:
        raise SynergicError(f"{csv_path} is not a text CSV file; re-download it") from None
    except csv.Error as error:
        raise SynergicError(f"{csv_path}: unreadable CSV ({error}); re-download it") from None
    return rows


def read_split(csv_path: Path, image_dir: Path, *, split: str) -> FileImageDataset:
    """One split from its ground-truth CSV and image folder; every row's image must exist."""
    rows = read_ground_truth(csv_path)
    if not rows:
        raise SynergicError(f"{csv_path} lists no images; re-download it")
    ids, labels, paths = [], [], []
    for image_id, label in rows:
        path = image_dir / f"{image_id}.jpg"
        nested = image_dir / image_dir.name
        if not path.is_file() and (nested / path.name).is_file():
            raise SynergicError(
                f"ISIC 2016 image {path} is missing (listed in {csv_path}): the images were "
                f"unpacked one folder too deep, into {nested}; move them up into {image_dir}"
            )
        if not path.is_file():
            raise SynergicError(
                f"ISIC 2016 image {path} is missing (listed in {csv_path}); {_DOWNLOAD_HINT}"
            )
        ids.append(image_id)
        labels.append(label)
        paths.append(path)
    return FileImageDataset(
        CLASSES, ids, labels, paths, name=f"isic2016 ({split})", source=csv_path
    )


def download(
    root: str | os.PathLike[str] | None = None,
    *,
    base_url: str = BASE_URL,
    progress: bool = True,
) -> Path:
    """Download and unpack ISIC 2016 Part 3 into ``root``; return ``root``.

    ``root`` defaults to :func:`default_data_root` ``("isic2016")``. Each archive is checked
    (``zipfile.testzip``), unpacked (refusing members that would land outside ``root``) and
    deleted; a ``.<folder>.complete`` marker then records the unpacked folder
    (:func:`synergic.data.download.fetch_unpacked`). Finally both splits must have one image per
    CSV row (:func:`synergic.data.download.verify_images`). Calling it again fetches nothing that
    is already complete, so it is safe to rerun after an interruption; a copy unpacked by hand
    with one image per CSV row counts as complete.

    Raises:
        SynergicError: a failed or damaged download, in one line (see
            :mod:`synergic.data.download`).
    """
    from synergic.data.download import (
        data_root,
        fetch,
        fetch_unpacked,
        has_one_image_per_row,
        verify_images,
    )

    from synergic.data.datasets.isic_files import check_no_copy_nearby

    check_no_copy_nearby(
        Path(root).expanduser() if root is not None else default_data_root("isic2016"),
        lambda folder: [name for split in SPLIT_FILES for name in missing_files(folder, split)],
        2 * len(SPLIT_FILES), title="ISIC 2016", dataset="isic2016",
    )
    root_dir = data_root(root, "isic2016")
    base = base_url if base_url.endswith("/") else base_url + "/"
    for split, (image_dir_name, csv_name) in SPLIT_FILES.items():
        csv_path = fetch(base + csv_name, root_dir / csv_name, progress=progress)

        def read_ids(csv_path: Path = csv_path) -> list[str]:
            return [image_id for image_id, _ in read_ground_truth(csv_path)]

        folder = fetch_unpacked(
            base, root_dir / image_dir_name, progress=progress,
            complete=lambda folder: has_one_image_per_row(folder, read_ids),
        )
        verify_images(
            folder, read_ids, what=f"ISIC 2016 {split} data", source=csv_path, dataset="isic2016"
        )
    return root_dir
