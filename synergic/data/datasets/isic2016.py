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

import os
from pathlib import Path

from synergic.data import NoSuchSplit
from synergic.data.datasets.base import FileImageDataset, check_split_name
from synergic.data.datasets.isic_files import (
    csv_rows,
    download_splits,
    find_files,
    missing_split_files,
    root_folder,
    split_dataset,
    twice_error,
)
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
_TITLE = "ISIC 2016"


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
    root_dir = root_folder(root, "isic2016")
    image_dir_name, csv_name = SPLIT_FILES[split]
    find_files(
        root_dir, lambda folder: missing_files(folder, split), 2, title=_TITLE,
        dataset="isic2016", download=globals()["download"] if download else None,
    )
    return read_split(root_dir / csv_name, root_dir / image_dir_name, split=split)


def missing_files(root: Path, split: str) -> list[str]:
    """Which of the split's image folder and CSV are not in ``root``."""
    return missing_split_files(root, *SPLIT_FILES[split])


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
    """The ``(image id, label)`` rows of an official ground-truth CSV, in file order.

    Raises:
        SynergicError: a row without two cells, an unknown label, an image id twice, or a file
            that is not a text CSV; naming the file (and line).
    """
    rows: list[tuple[str, int]] = []
    first_line: dict[str, int] = {}
    for line, cells in csv_rows(csv_path):
        if len(cells) < 2:
            raise SynergicError(
                f"{csv_path} line {line}: expected 'image_id,label', "
                f"got {','.join(cells)!r}; fix the file or re-download it"
            )
        image_id, raw_label = cells[0], cells[1]
        label = parse_label(raw_label)
        if label is None:
            if line == 1 and not image_id.upper().startswith("ISIC_"):
                continue  # a header row, which the official files do not have
            raise SynergicError(
                f"{csv_path} line {line}: unknown label {raw_label!r} for {image_id}; "
                "expected benign/malignant or 0/1; fix the file or re-download it"
            )
        if image_id in first_line:
            raise twice_error(csv_path, image_id, first_line[image_id], line)
        first_line[image_id] = line
        rows.append((image_id, label))
    return rows


def read_split(csv_path: Path, image_dir: Path, *, split: str) -> FileImageDataset:
    """One split from its ground-truth CSV and image folder; every row's image must exist."""
    return split_dataset(
        CLASSES, read_ground_truth(csv_path), image_dir, csv_path,
        name=f"isic2016 ({split})", title=_TITLE, dataset="isic2016",
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
    return download_splits(
        root, base_url, SPLIT_FILES,
        lambda csv_path: [image_id for image_id, _ in read_ground_truth(csv_path)],
        title=_TITLE, dataset="isic2016", progress=progress,
    )
