"""ISIC 2017 skin lesion classification (ISIC 2017 challenge, Part 3): nevus, melanoma or
seborrheic keratosis.

The second data set of the SDL journal version (Zhang et al., Medical Image Analysis 2019): 2,000
training, 150 validation and 600 test dermoscopy images. The official download unpacks to::

    ISIC-2017_Training_Data/ISIC_0000000.jpg ...
    ISIC-2017_Training_Part3_GroundTruth.csv
    ISIC-2017_Validation_Data/ISIC_0001769.jpg ...
    ISIC-2017_Validation_Part3_GroundTruth.csv
    ISIC-2017_Test_v2_Data/ISIC_0012086.jpg ...
    ISIC-2017_Test_v2_Part3_GroundTruth.csv

The image folders also hold ``ISIC_xxxxxxx_superpixels.png`` files (for Part 2) and a
``*_metadata.csv`` (age, sex), both ignored. The ground-truth CSVs have the header
``image_id,melanoma,seborrheic_keratosis`` and ``0.0``/``1.0`` cells: a nevus has both 0, a row
with both 1 is an error. The challenge ranked Part 3 by the mean of two one-vs-rest ROC AUCs,
melanoma vs the rest and seborrheic keratosis vs the rest (Codella et al., ISBI 2018).
"""

from __future__ import annotations

import os
from pathlib import Path

from synergic.data.datasets.base import FileImageDataset, check_split_name
from synergic.data.datasets.isic_files import (
    FIX_OR_DOWNLOAD,
    download_splits,
    find_files,
    indicator,
    missing_split_files,
    read_table,
    root_folder,
    split_dataset,
)
from synergic.errors import SynergicError, did_you_mean

CLASSES = ("nevus", "melanoma", "seborrheic_keratosis")
"""The three classes of ``task="all"``, in label order (nevus = 0)."""

TASKS = ("melanoma", "seborrheic_keratosis")
"""The challenge's two binary tasks, each one class against the other two."""

BASE_URL = "https://isic-challenge-data.s3.amazonaws.com/2017/"
"""Where the ISIC challenge publishes the 2017 files."""

SPLIT_FILES = {
    "train": ("ISIC-2017_Training_Data", "ISIC-2017_Training_Part3_GroundTruth.csv"),
    "val": ("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part3_GroundTruth.csv"),
    "test": ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part3_GroundTruth.csv"),
}
"""For each split: its image folder and its ground-truth CSV, relative to the data root."""

DOWNLOAD_FILES = tuple(
    name for folder, csv_name in SPLIT_FILES.values() for name in (f"{folder}.zip", csv_name)
)
"""The six official files of ISIC 2017 Part 3: each split's image archive and ground truth."""

COLUMNS = ("image_id", "melanoma", "seborrheic_keratosis")
"""The columns of the ground-truth CSVs."""

_TITLE = "ISIC 2017"


def isic2017(
    root: str | os.PathLike[str] | None = None,
    *,
    split: str,
    download: bool = False,
    task: str = "all",
) -> FileImageDataset:
    """ISIC 2017 Part 3 skin lesions (options: download, task).

    Splits ``train`` (2,000 images), ``val`` (the official 150-image validation set, used as it
    is: nothing is carved out of ``train``) and ``test`` (600). ``root`` defaults to
    :func:`synergic.data.paths.default_data_root` ``("isic2017")``; ``download=True`` fetches the
    official files there first when they are missing.

    ``task="all"``: classes ``("nevus", "melanoma", "seborrheic_keratosis")``, primary metric
    ``"task_auc"`` (the mean of the two one-vs-rest AUCs of ``task_classes``, as the challenge
    ranked). ``task="melanoma"`` or ``"seborrheic_keratosis"``: one of the challenge's binary
    tasks, classes ``("other", task)`` with the task's class at index 1, primary metric ``"auc"``.

    The data set carries ``primary_metric`` and, for ``task="all"``, ``task_classes``. ISIC 2017
    publishes no lesion or patient ids, so it has no ``groups``.

    Raises:
        SynergicError: an unknown split or task; files missing (saying where they are when they
            are near ``root``); a CSV that is not the official format, a row labelled both
            melanoma and seborrheic keratosis, or a row whose image is missing (naming the file
            and line).
    """
    check_split_name(split, "isic2017")
    if task not in ("all", *TASKS):
        raise SynergicError(
            f"data set 'isic2017': unknown task {task!r}{did_you_mean(str(task), TASKS)}; "
            f"valid tasks: all, {', '.join(TASKS)}"
        )
    root_dir = root_folder(root, "isic2017")
    image_dir_name, csv_name = SPLIT_FILES[split]
    find_files(
        root_dir, lambda folder: missing_files(folder, split), 2, title=_TITLE,
        dataset="isic2017", download=globals()["download"] if download else None,
    )
    rows = read_ground_truth(root_dir / csv_name)
    suffix = "" if task == "all" else f", {task}"
    if task == "all":
        classes: tuple[str, ...] = CLASSES
    else:
        classes = ("other", task)
        positive = CLASSES.index(task)
        rows = [(image_id, int(label == positive)) for image_id, label in rows]
    dataset = split_dataset(
        classes, rows, root_dir / image_dir_name, root_dir / csv_name,
        name=f"isic2017 ({split}{suffix})", title=_TITLE, dataset="isic2017",
    )
    if task == "all":
        dataset.primary_metric = "task_auc"
        dataset.task_classes = TASKS
    else:
        dataset.primary_metric = "auc"
    return dataset


def missing_files(root: Path, split: str) -> list[str]:
    """Which of the split's image folder and CSV are not in ``root``."""
    return missing_split_files(root, *SPLIT_FILES[split])


def read_ground_truth(csv_path: Path) -> list[tuple[str, int]]:
    """The ``(image id, class index into CLASSES)`` rows of an official Part 3 ground-truth CSV,
    in file order: nevus (0) when both columns are 0, melanoma (1), seborrheic keratosis (2).

    Raises:
        SynergicError: not the official header, a cell that is not 0/1, a row with both 1, an
            image id twice; naming the file and line.
    """
    rows = []
    for line, row in read_table(csv_path, COLUMNS):
        melanoma, keratosis = (
            indicator(row[column], csv_path=csv_path, line=line, column=column)
            for column in TASKS
        )
        if melanoma and keratosis:
            raise SynergicError(
                f"{csv_path} line {line}: {row['image_id']} is labelled both melanoma and "
                f"seborrheic_keratosis; the classes exclude each other{FIX_OR_DOWNLOAD}"
            )
        rows.append((row["image_id"], 1 if melanoma else 2 if keratosis else 0))
    return rows


def download(
    root: str | os.PathLike[str] | None = None,
    *,
    base_url: str = BASE_URL,
    progress: bool = True,
) -> Path:
    """Download and unpack ISIC 2017 Part 3 (:data:`DOWNLOAD_FILES`) into ``root``; return
    ``root``.

    ``root`` defaults to :func:`default_data_root` ``("isic2017")``. Resumable, checked and
    idempotent like every download (:mod:`synergic.data.download`); afterwards each split must
    have one image per CSV row (superpixel PNGs and the metadata CSV in the folders are not
    counted). A copy unpacked by hand with one image per row counts as complete.

    Raises:
        SynergicError: a failed or damaged download, in one line.
    """
    return download_splits(
        root, base_url, SPLIT_FILES,
        lambda csv_path: [image_id for image_id, _ in read_ground_truth(csv_path)],
        title=_TITLE, dataset="isic2017", progress=progress,
    )
