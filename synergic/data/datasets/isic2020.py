"""SIIM-ISIC 2020 melanoma classification (ISIC 2020 challenge, on Kaggle): benign or malignant.

33,126 training dermoscopy images of 2,056 patients, 584 of them malignant (about 1.8 %;
Rotemberg et al., Scientific Data 2021). The official download unpacks to::

    train/ISIC_2637011.jpg ...                  (from ISIC_2020_Training_JPEG.zip)
    ISIC_2020_Training_GroundTruth_v2.csv       (or the first version, without _v2)
    ISIC_2020_Training_Duplicates.csv

The ground truth has the header ``image_name,patient_id,lesion_id,sex,age_approx,
anatom_site_general_challenge,diagnosis,benign_malignant,target`` (the first version has no
``lesion_id``); ``target`` is 1 for a malignant lesion. The duplicates list
(``image_name_1,image_name_2``) names pairs of files that show the same image; the second of each
pair is dropped unless ``drop_duplicates=False``.

**The test split is not the challenge's.** The labels of the official test images were never
published (the challenge was scored on Kaggle), so this data set's ``test`` split is a fixed part
of the official *training* data: every image of the patients whose id hashes below
``test_percent`` (SHA-256 of the patient id, mod 100), and ``train`` is the rest. No patient is
on both sides; the split depends on the patient ids only, not on the order of the CSV or on any
seed, so it is the same on every machine. Results on it are not comparable with the Kaggle
leaderboard. The challenge ranked by ROC AUC of the malignant class.
"""

from __future__ import annotations

import hashlib
import numbers
import os
from pathlib import Path

from synergic.data import NoSuchSplit
from synergic.data.datasets.base import FileImageDataset, check_split_name
from synergic.data.datasets.isic_files import (
    csv_rows,
    fetch_table,
    find_files,
    indicator,
    prepare_download,
    read_table,
    root_folder,
    split_dataset,
    warn_once,
)
from synergic.errors import SynergicError

CLASSES = ("benign", "malignant")
"""Class names; ``malignant`` (index 1, ``target`` 1) is the positive class."""

BASE_URL = "https://isic-challenge-data.s3.amazonaws.com/2020/"
"""Where the ISIC challenge publishes the 2020 files."""

IMAGES = "train"
"""The image folder that ``ISIC_2020_Training_JPEG.zip`` unpacks to."""

IMAGES_ARCHIVE = "ISIC_2020_Training_JPEG.zip"

GROUND_TRUTH = "ISIC_2020_Training_GroundTruth_v2.csv"
"""The ground truth with lesion ids; preferred."""

GROUND_TRUTH_V1 = "ISIC_2020_Training_GroundTruth.csv"
"""The first ground truth, without ``lesion_id``; read when the second version is absent."""

DUPLICATES = "ISIC_2020_Training_Duplicates.csv"
"""Pairs of duplicate images: ``image_name_1,image_name_2``."""

DOWNLOAD_FILES = (IMAGES_ARCHIVE, GROUND_TRUTH, DUPLICATES)
"""The three official files used: the JPEG images, the second ground truth, the duplicates."""

DEFAULT_TEST_PERCENT = 20

_TITLE = "ISIC 2020"


def isic2020(
    root: str | os.PathLike[str] | None = None,
    *,
    split: str,
    download: bool = False,
    test_percent: int = DEFAULT_TEST_PERCENT,
    drop_duplicates: bool = True,
) -> FileImageDataset:
    """SIIM-ISIC 2020 skin lesions, binary (options: download, test_percent, drop_duplicates).

    Splits ``train`` and ``test``, both from the official *training* data: the official test
    labels were never published, so ``test`` holds every image of the patients in
    :func:`is_test_patient` (about ``test_percent`` % of the patients, default 20), ``train`` the
    rest; there is no ``val`` (:class:`NoSuchSplit`: the validation split is carved out of
    ``train``, keeping each patient on one side). ``drop_duplicates`` drops the second image of
    each pair in :data:`DUPLICATES` (one warning says how many), before the split. ``root``
    defaults to :func:`synergic.data.paths.default_data_root` ``("isic2020")``; ``download=True``
    fetches the official files there first when they are missing.

    The data set carries ``primary_metric = "auc"`` and ``groups = {"patient": [...],
    "lesion": [...]}`` (``lesion`` from the second ground truth only; an image without an id is
    a group of its own).

    Raises:
        NoSuchSplit: ``split="val"``.
        SynergicError: an unknown split; ``test_percent`` not an integer in 1..99; files missing
            (saying where they are when they are near ``root``), the duplicates list missing
            while ``drop_duplicates``; a CSV that is not the official format, a ``target`` that
            is not 0/1, or a row whose image is missing (naming the file and line).
    """
    check_split_name(split, "isic2020")
    if split == "val":
        raise NoSuchSplit("isic2020 has no validation split")
    if isinstance(test_percent, bool) or not isinstance(test_percent, numbers.Integral) \
            or not 1 <= test_percent <= 99:
        raise SynergicError(
            f"data.options.test_percent: isic2020 takes an integer from 1 to 99 (the share of "
            f"patients in the test split), got {test_percent!r}"
        )
    root_dir = root_folder(root, "isic2020")
    find_files(
        root_dir, missing_files, 2, title=_TITLE, dataset="isic2020",
        download=globals()["download"] if download else None,
    )
    csv_path = ground_truth_path(root_dir)
    rows = read_ground_truth(csv_path)
    if drop_duplicates:
        duplicates_path = root_dir / DUPLICATES
        if not duplicates_path.is_file():
            raise SynergicError(
                f"{_TITLE}: no {DUPLICATES} in {root_dir}, so the duplicate images cannot be "
                "dropped: run 'synergic data download isic2020', or set "
                "data.options.drop_duplicates: false to keep them"
            )
        dropped = read_duplicates(duplicates_path) & {row["image_name"] for row in rows}
        if dropped:
            rows = [row for row in rows if row["image_name"] not in dropped]
            plural = "s" if len(dropped) != 1 else ""
            warn_once(
                f"{_TITLE}: dropped {len(dropped)} duplicate image{plural} (the second of each "
                f"pair in {DUPLICATES}; data.options.drop_duplicates: false keeps them)",
                source=root_dir,
            )
    wanted = split == "test"
    rows = [row for row in rows if is_test_patient(patient_of(row), test_percent) == wanted]
    if not rows:
        raise SynergicError(
            f"{_TITLE}: the {split} split of {csv_path} is empty with test_percent={test_percent}; "
            "set data.options.test_percent nearer 50"
        )
    dataset = split_dataset(
        CLASSES, [(row["image_name"], row["label"]) for row in rows], root_dir / IMAGES,
        csv_path, name=f"isic2020 ({split})", title=_TITLE, dataset="isic2020",
    )
    dataset.primary_metric = "auc"
    dataset.groups = {"patient": [patient_of(row) for row in rows]}
    if "lesion_id" in rows[0]:
        dataset.groups["lesion"] = [row["lesion_id"] or row["image_name"] for row in rows]
    return dataset


def is_test_patient(patient_id: str, test_percent: int = DEFAULT_TEST_PERCENT) -> bool:
    """Whether the patient's images are in the ``test`` split: the SHA-256 of the patient id
    (UTF-8), read as a big-endian integer, mod 100, is below ``test_percent``. It depends on the
    id alone, so the split is the same whatever the order of the CSV, on every machine."""
    digest = hashlib.sha256(patient_id.encode("utf-8")).digest()
    return int.from_bytes(digest, "big") % 100 < test_percent


def patient_of(row: dict) -> str:
    """A row's patient id; its image name when the id is blank (a patient of its own)."""
    return row["patient_id"] or row["image_name"]


def ground_truth_path(root: Path) -> Path:
    """:data:`GROUND_TRUTH` in ``root``, else :data:`GROUND_TRUTH_V1` when only it is there."""
    if not (root / GROUND_TRUTH).is_file() and (root / GROUND_TRUTH_V1).is_file():
        return root / GROUND_TRUTH_V1
    return root / GROUND_TRUTH


def missing_files(root: Path) -> list[str]:
    """Which of the image folder and the ground truth (either version) are not in ``root``."""
    missing = []
    if not (root / IMAGES).is_dir():
        missing.append(f"{IMAGES}/ (from {IMAGES_ARCHIVE})")
    if not ground_truth_path(root).is_file():
        missing.append(GROUND_TRUTH)
    return missing


def read_ground_truth(csv_path: Path) -> list[dict]:
    """The rows of an official ground truth in file order, each its cells plus ``label`` (the
    class index: ``target``).

    Raises:
        SynergicError: not the official header, a ``target`` that is not 0/1, an image name
            twice; naming the file and line.
    """
    rows = []
    for line, row in read_table(csv_path, ("image_name", "patient_id", "target")):
        row["label"] = indicator(row["target"], csv_path=csv_path, line=line, column="target")
        rows.append(row)
    return rows


def read_duplicates(csv_path: Path) -> set[str]:
    """The image names that :data:`DUPLICATES` lists second in a pair (the ones dropped).

    Raises:
        SynergicError: not the official header (``image_name_1,image_name_2``), naming the file.
    """
    # Not read_table: that wants a unique first column, and an image may be in several pairs.
    rows = csv_rows(csv_path)
    _, header = next(rows, (0, []))
    if "image_name_1" not in header or "image_name_2" not in header:
        raise SynergicError(
            f"{csv_path}: expected a header with the columns image_name_1,image_name_2, "
            f"got {','.join(header)!r}; re-download it"
        )
    second = header.index("image_name_2")
    return {cells[second] for _, cells in rows if second < len(cells)} - {""}


def download(
    root: str | os.PathLike[str] | None = None,
    *,
    base_url: str = BASE_URL,
    progress: bool = True,
) -> Path:
    """Download and unpack ISIC 2020 (:data:`DOWNLOAD_FILES`) into ``root``; return ``root``.

    ``root`` defaults to :func:`default_data_root` ``("isic2020")``. Resumable, checked and
    idempotent like every download (:mod:`synergic.data.download`): the archive
    :data:`IMAGES_ARCHIVE` is fetched with :func:`~synergic.data.download.fetch`, unpacked into
    :data:`IMAGES` with :func:`~synergic.data.download.unpack_zip`, marked complete
    (:func:`~synergic.data.download.completion_marker`) and deleted; afterwards the folder must
    have one image per ground-truth row. A copy unpacked by hand with one image per row counts as
    complete.

    Raises:
        SynergicError: a failed or damaged download, in one line.
    """
    from synergic.data.download import (
        completion_marker,
        fetch,
        has_one_image_per_row,
        unpack_zip,
        verify_images,
    )

    root_dir, base = prepare_download(
        root, base_url, missing_files, 2, title=_TITLE, dataset="isic2020"
    )
    csv_path = fetch(base + GROUND_TRUTH, root_dir / GROUND_TRUTH, progress=progress)

    def read_ids() -> list[str]:
        return [row["image_name"] for row in read_ground_truth(csv_path)]

    # fetch_unpacked names the archive after the folder; this one is not (train/ from
    # ISIC_2020_Training_JPEG.zip), so its steps are taken here.
    folder = root_dir / IMAGES
    marker = completion_marker(folder)
    if not (folder.is_dir() and (marker.is_file() or has_one_image_per_row(folder, read_ids))):
        archive = fetch(base + IMAGES_ARCHIVE, root_dir / IMAGES_ARCHIVE, progress=progress)
        unpack_zip(archive, folder, progress=progress)
        marker.touch()
        archive.unlink()
    verify_images(folder, read_ids, what=f"{_TITLE} data", source=csv_path, dataset="isic2020")
    fetch_table(
        base, root_dir / DUPLICATES, read_duplicates, what=f"{_TITLE} duplicates list",
        dataset="isic2020", progress=progress,
    )
    return root_dir
