"""ISIC 2019 skin lesion classification (ISIC 2019 challenge, task 1): eight diagnoses.

25,331 training dermoscopy images of mixed sizes (HAM10000 at 600x450, BCN_20000 at 1024x1024,
MSK of various sizes; Tschandl et al. 2018, Combalia et al. arXiv:1908.02288, Codella et al.
2018) and 8,238 test images. The official download unpacks to::

    ISIC_2019_Training_Input/ISIC_0000000.jpg ...  (and ATTRIBUTION.txt, LICENSE.txt)
    ISIC_2019_Training_GroundTruth.csv
    ISIC_2019_Training_Metadata.csv
    ISIC_2019_Test_Input/ISIC_0034321.jpg ...
    ISIC_2019_Test_GroundTruth.csv              (published after the challenge)

The ground truth is one-hot: header ``image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK`` and ``0.0``/``1.0``
cells, exactly one 1.0 per row. ``UNK`` (none of the eight) has no training image: the challenge
asked to recognise it in the test set only, so the data set has the eight known classes, a
training row labelled UNK is an error, and the test rows labelled UNK are left out (one warning
says how many), since an eight-class model cannot be scored on them. Other columns (the test
file's ``score_weight``) are ignored. Image ids are kept as the CSV writes them, including the
``ISIC_0000000_downsampled`` ones.

The metadata (``image,age_approx,anatom_site_general,lesion_id,sex``) says which training images
show the same lesion; ``lesion_id`` is blank for many images, each of which is then a lesion of
its own. The challenge ranked task 1 by balanced multiclass accuracy (the mean recall of the
classes).
"""

from __future__ import annotations

import os
from pathlib import Path

from synergic.data import NoSuchSplit
from synergic.data.datasets.base import FileImageDataset, check_split_name
from synergic.data.datasets.isic_files import (
    download_splits,
    fetch_table,
    find_files,
    lesion_groups,
    missing_split_files,
    one_hot_label,
    read_lesion_ids,
    read_table,
    root_folder,
    split_dataset,
    warn_once,
)
from synergic.errors import SynergicError

CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
"""The eight diagnoses, as the challenge's column codes in the CSV's column order: melanoma,
melanocytic nevus, basal cell carcinoma, actinic keratosis, benign keratosis, dermatofibroma,
vascular lesion, squamous cell carcinoma."""

UNKNOWN = "UNK"
"""The ground truth's ninth column: none of the eight classes (test images only)."""

BASE_URL = "https://isic-challenge-data.s3.amazonaws.com/2019/"
"""Where the ISIC challenge publishes the 2019 files."""

SPLIT_FILES = {
    "train": ("ISIC_2019_Training_Input", "ISIC_2019_Training_GroundTruth.csv"),
    "test": ("ISIC_2019_Test_Input", "ISIC_2019_Test_GroundTruth.csv"),
}
"""For each split: its image folder and its ground-truth CSV, relative to the data root."""

METADATA = "ISIC_2019_Training_Metadata.csv"
"""The training metadata; its ``lesion_id`` column gives the lesion groups."""

DOWNLOAD_FILES = (
    "ISIC_2019_Training_Input.zip",
    "ISIC_2019_Training_GroundTruth.csv",
    METADATA,
    "ISIC_2019_Test_Input.zip",
    "ISIC_2019_Test_GroundTruth.csv",
)
"""The five official files used: each split's image archive and ground truth, and the training
metadata (lesion ids)."""

_TITLE = "ISIC 2019"


def isic2019(
    root: str | os.PathLike[str] | None = None, *, split: str, download: bool = False
) -> FileImageDataset:
    """ISIC 2019 skin lesions, eight classes (options: download).

    Splits ``train`` (25,331 images) and ``test`` (the 8,238 official test images less those
    labelled UNK); there is no ``val`` (:class:`NoSuchSplit`: the validation split is carved out
    of ``train``, keeping each lesion on one side). Classes :data:`CLASSES`. ``root`` defaults to
    :func:`synergic.data.paths.default_data_root` ``("isic2019")``; ``download=True`` fetches the
    official files there first when they are missing.

    The data set carries ``primary_metric = "balanced_accuracy"`` and, for ``train``,
    ``groups = {"lesion": [...]}`` from :data:`METADATA` (an image without a lesion id is a
    lesion of its own). Without the metadata the training split has no groups, with one warning.

    Raises:
        NoSuchSplit: ``split="val"``.
        SynergicError: an unknown split; files missing (saying where they are when they are near
            ``root``, and how to get the test ground truth when only it is missing); a CSV that is
            not the official format, a row that is not exactly one-hot, a training row labelled
            UNK, or a row whose image is missing (naming the file and line).
    """
    check_split_name(split, "isic2019")
    if split == "val":
        raise NoSuchSplit("isic2019 has no validation split")
    root_dir = root_folder(root, "isic2019")
    image_dir_name, csv_name = SPLIT_FILES[split]
    if split == "test" and not download and (root_dir / image_dir_name).is_dir() \
            and not (root_dir / csv_name).is_file():
        raise SynergicError(
            f"{_TITLE} test ground truth {csv_name} is not in {root_dir}: the ISIC archive "
            f"published it after the challenge at {BASE_URL}{csv_name}; run 'synergic data "
            "download isic2019' (it fetches only what is missing) or put the file there; "
            "'synergic cv' needs no test split"
        )
    find_files(
        root_dir, lambda folder: missing_files(folder, split), 2, title=_TITLE,
        dataset="isic2019", download=globals()["download"] if download else None,
    )
    csv_path = root_dir / csv_name
    rows, unknown = read_ground_truth(csv_path, allow_unknown=split == "test")
    if unknown:
        warn_once(
            f"{_TITLE}: left {unknown} test image{'s' if unknown != 1 else ''} labelled "
            f"{UNKNOWN} out of the test split ({csv_path}): an eight-class model cannot be "
            "scored on them",
            source=root_dir,
        )
    if not rows:
        raise SynergicError(f"{csv_path} lists no images of the eight classes; re-download it")
    dataset = split_dataset(
        CLASSES, rows, root_dir / image_dir_name, csv_path, name=f"isic2019 ({split})",
        title=_TITLE, dataset="isic2019",
    )
    dataset.primary_metric = "balanced_accuracy"
    if split == "train":
        groups = lesion_groups(dataset.ids, root_dir / METADATA, title=_TITLE, dataset="isic2019")
        if groups is not None:
            dataset.groups = groups
    return dataset


def missing_files(root: Path, split: str) -> list[str]:
    """Which of the split's image folder and ground-truth CSV are not in ``root``."""
    return missing_split_files(root, *SPLIT_FILES[split])


def read_ground_truth(
    csv_path: Path, *, allow_unknown: bool = False
) -> tuple[list[tuple[str, int]], int]:
    """``(rows, unknown)``: the ``(image id, class index into CLASSES)`` rows of an official
    ground-truth CSV in file order, and how many rows labelled UNK were left out of them.

    Raises:
        SynergicError: not the official header, a cell that is not 0/1, a row that is not exactly
            one-hot, an image id twice, or (unless ``allow_unknown``) a row labelled UNK; naming
            the file and line.
    """
    rows: list[tuple[str, int]] = []
    unknown = 0
    for line, row in read_table(csv_path, ("image", *CLASSES, UNKNOWN)):
        if one_hot_label(row, (*CLASSES, UNKNOWN), csv_path=csv_path, line=line) == len(CLASSES):
            if not allow_unknown:
                raise SynergicError(
                    f"{csv_path} line {line}: {row['image']} is labelled {UNKNOWN}, which has no "
                    f"training images in {_TITLE}: the training classes are "
                    f"{','.join(CLASSES)}; re-download the file"
                )
            unknown += 1
            continue
        rows.append((row["image"], one_hot_label(row, CLASSES, csv_path=csv_path, line=line)))
    return rows, unknown


def download(
    root: str | os.PathLike[str] | None = None,
    *,
    base_url: str = BASE_URL,
    progress: bool = True,
) -> Path:
    """Download and unpack ISIC 2019 (:data:`DOWNLOAD_FILES`, about 12.7 GB) into ``root``;
    return ``root``.

    ``root`` defaults to :func:`default_data_root` ``("isic2019")``. Resumable, checked and
    idempotent like every download (:mod:`synergic.data.download`): run it again to fetch only
    what is missing (the test ground truth, say); afterwards each split must have one image per
    ground-truth row, UNK rows included (ATTRIBUTION.txt and LICENSE.txt beside the images are
    not counted). A copy unpacked by hand with one image per row counts as complete.

    Raises:
        SynergicError: a failed or damaged download, in one line.
    """

    def all_ids(csv_path: Path) -> list[str]:  # UNK rows too: the archives hold their images
        return [row["image"] for _, row in read_table(csv_path, ("image", *CLASSES, UNKNOWN))]

    # A copy still without the test ground truth (published after the challenge) is a copy:
    # completing it is fetching that one file into it.
    root_dir = download_splits(
        root, base_url, SPLIT_FILES, all_ids, title=_TITLE, dataset="isic2019",
        progress=progress, optional=[SPLIT_FILES["test"][1]],
    )
    fetch_table(
        base_url, root_dir / METADATA, read_lesion_ids, what=f"{_TITLE} metadata",
        dataset="isic2019", progress=progress,
    )
    return root_dir
