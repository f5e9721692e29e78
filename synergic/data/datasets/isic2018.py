"""ISIC 2018 skin lesion classification (ISIC 2018 challenge, Task 3; the training images are
HAM10000): seven diagnoses.

10,015 training, 193 validation and 1,512 test dermoscopy images (Tschandl et al., Scientific
Data 2018; Codella et al., arXiv:1902.03368). The official download unpacks to::

    ISIC2018_Task3_Training_Input/ISIC_0024306.jpg ...  (and ATTRIBUTION.txt, LICENSE.txt)
    ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv
    ISIC2018_Task3_Validation_Input/ ...
    ISIC2018_Task3_Validation_GroundTruth/ISIC2018_Task3_Validation_GroundTruth.csv
    ISIC2018_Task3_Test_Input/ ...
    ISIC2018_Task3_Test_GroundTruth/ISIC2018_Task3_Test_GroundTruth.csv
    ISIC2018_Task3_Training_LesionGroupings.csv

The ground truth is one-hot: header ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` and ``0.0``/``1.0``
cells, exactly one 1.0 per row. A ground-truth CSV lying directly in the data root (unzipped
without its folder) is read too. The lesion groupings (``image,lesion_id,diagnosis_confirm_type``)
say which training images show the same lesion; HAM10000 has up to six images of one lesion, so
a validation split or a cross-validation fold that ignores them puts photographs of one lesion
on both sides. The challenge ranked Task 3 by balanced multiclass accuracy (the mean recall of
the seven classes).
"""

from __future__ import annotations

import os
from pathlib import Path

from synergic.data.datasets.base import FileImageDataset, check_split_name
from synergic.data.datasets.isic_files import (
    fetch_split_images,
    fetch_table,
    find_files,
    lesion_groups,
    one_hot_label,
    prepare_download,
    read_lesion_ids,
    read_table,
    root_folder,
    split_dataset,
)

CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
"""The seven diagnoses, as the challenge's column codes in the CSV's column order: melanoma,
melanocytic nevus, basal cell carcinoma, actinic keratosis / Bowen's disease (intraepithelial
carcinoma), benign keratosis, dermatofibroma, vascular lesion."""

BASE_URL = "https://isic-challenge-data.s3.amazonaws.com/2018/"
"""Where the ISIC challenge publishes the 2018 files."""

SPLIT_FILES = {
    "train": ("ISIC2018_Task3_Training_Input", "ISIC2018_Task3_Training_GroundTruth"),
    "val": ("ISIC2018_Task3_Validation_Input", "ISIC2018_Task3_Validation_GroundTruth"),
    "test": ("ISIC2018_Task3_Test_Input", "ISIC2018_Task3_Test_GroundTruth"),
}
"""For each split: its image folder and its ground-truth folder, relative to the data root; the
ground-truth folder holds ``<folder name>.csv``."""

LESION_GROUPINGS = "ISIC2018_Task3_Training_LesionGroupings.csv"
"""Which training images show the same lesion: ``image,lesion_id,diagnosis_confirm_type``."""

DOWNLOAD_FILES = (
    *(f"{name}.zip" for folders in SPLIT_FILES.values() for name in folders),
    LESION_GROUPINGS,
)
"""The seven official files of ISIC 2018 Task 3: each split's image and ground-truth archives,
and the training set's lesion groupings."""

_TITLE = "ISIC 2018"


def isic2018(
    root: str | os.PathLike[str] | None = None, *, split: str, download: bool = False
) -> FileImageDataset:
    """ISIC 2018 Task 3 (HAM10000) skin lesions, seven classes (options: download).

    Splits ``train`` (10,015 images), ``val`` (the official 193, used as they are: nothing is
    carved out of ``train``) and ``test`` (1,512). Classes :data:`CLASSES`. ``root`` defaults to
    :func:`synergic.data.paths.default_data_root` ``("isic2018")``; ``download=True`` fetches the
    official files there first when they are missing.

    The data set carries ``primary_metric = "balanced_accuracy"`` and, for ``train``,
    ``groups = {"lesion": [...]}`` from :data:`LESION_GROUPINGS` (an image it does not list is a
    lesion of its own). Without that file the training split has no groups, with one warning.

    Raises:
        SynergicError: an unknown split; files missing (saying where they are when they are near
            ``root``); a CSV that is not the official format, a row that is not exactly one-hot,
            or a row whose image is missing (naming the file and line).
    """
    check_split_name(split, "isic2018")
    root_dir = root_folder(root, "isic2018")
    find_files(
        root_dir, lambda folder: missing_files(folder, split), 2, title=_TITLE,
        dataset="isic2018", download=globals()["download"] if download else None,
    )
    csv_path = ground_truth_path(root_dir, split)
    dataset = split_dataset(
        CLASSES, read_ground_truth(csv_path), root_dir / SPLIT_FILES[split][0], csv_path,
        name=f"isic2018 ({split})", title=_TITLE, dataset="isic2018",
    )
    dataset.primary_metric = "balanced_accuracy"
    if split == "train":
        groups = lesion_groups(
            dataset.ids, root_dir / LESION_GROUPINGS, title=_TITLE, dataset="isic2018"
        )
        if groups is not None:
            dataset.groups = groups
    return dataset


def ground_truth_path(root: Path, split: str) -> Path:
    """The split's ground-truth CSV: in its official folder, or else directly in ``root`` when
    only that copy exists."""
    folder = SPLIT_FILES[split][1]
    official = root / folder / f"{folder}.csv"
    flat = root / f"{folder}.csv"
    return flat if not official.is_file() and flat.is_file() else official


def missing_files(root: Path, split: str) -> list[str]:
    """Which of the split's image folder and ground-truth CSV are not in ``root``."""
    image_dir_name, truth_dir_name = SPLIT_FILES[split]
    missing = []
    if not (root / image_dir_name).is_dir():
        missing.append(image_dir_name)
    if not ground_truth_path(root, split).is_file():
        missing.append(f"{truth_dir_name}/{truth_dir_name}.csv")
    return missing


def read_ground_truth(csv_path: Path) -> list[tuple[str, int]]:
    """The ``(image id, class index into CLASSES)`` rows of an official Task 3 ground-truth CSV,
    in file order.

    Raises:
        SynergicError: not the official header, a cell that is not 0/1, a row that is not
            exactly one-hot, an image id twice; naming the file and line.
    """
    return [
        (row["image"], one_hot_label(row, CLASSES, csv_path=csv_path, line=line))
        for line, row in read_table(csv_path, ("image", *CLASSES))
    ]


def read_lesion_groupings(csv_path: Path) -> dict[str, str]:
    """``{image id: lesion id}`` from :data:`LESION_GROUPINGS`; an empty lesion id is left out.

    Raises:
        SynergicError: not the official header (``image,lesion_id,...``), an image id twice.
    """
    return read_lesion_ids(csv_path)


def download(
    root: str | os.PathLike[str] | None = None,
    *,
    base_url: str = BASE_URL,
    progress: bool = True,
) -> Path:
    """Download and unpack ISIC 2018 Task 3 (:data:`DOWNLOAD_FILES`) into ``root``; return
    ``root``.

    ``root`` defaults to :func:`default_data_root` ``("isic2018")``. Resumable, checked and
    idempotent like every download (:mod:`synergic.data.download`); afterwards each split must
    have one image per ground-truth row (ATTRIBUTION.txt and LICENSE.txt beside the images are
    not counted). A copy unpacked by hand with one image per row counts as complete.

    Raises:
        SynergicError: a failed or damaged download, in one line.
    """
    from synergic.data.download import fetch_unpacked

    root_dir, base = prepare_download(
        root, base_url,
        lambda folder: [name for split in SPLIT_FILES for name in missing_files(folder, split)],
        2 * len(SPLIT_FILES), title=_TITLE, dataset="isic2018",
    )
    for split, (image_dir_name, truth_dir_name) in SPLIT_FILES.items():
        # The ground truth is an archive of its own (a folder holding <folder name>.csv).
        fetch_unpacked(
            base, root_dir / truth_dir_name, progress=progress,
            complete=lambda folder: (folder / f"{folder.name}.csv").is_file(),
        )
        fetch_split_images(
            base, root_dir / image_dir_name, ground_truth_path(root_dir, split),
            lambda csv_path: [image_id for image_id, _ in read_ground_truth(csv_path)],
            what=f"{_TITLE} {split} data", dataset="isic2018", progress=progress,
        )
    fetch_table(
        base, root_dir / LESION_GROUPINGS, read_lesion_groupings,
        what=f"{_TITLE} lesion groupings file", dataset="isic2018", progress=progress,
    )
    return root_dir
