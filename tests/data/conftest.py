"""Fixtures for the data tests: tiny image files and fabricated ISIC 2016 layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

SHARED_ISIC_SAMPLE = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "isic2016-sample"
)

TRAIN_IMAGES = "ISBI2016_ISIC_Part3_Training_Data"
TRAIN_CSV = "ISBI2016_ISIC_Part3_Training_GroundTruth.csv"
TEST_IMAGES = "ISBI2016_ISIC_Part3_Test_Data"
TEST_CSV = "ISBI2016_ISIC_Part3_Test_GroundTruth.csv"


def write_jpeg(path: Path, color=(200, 40, 40), size=(16, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="JPEG")
    return path


def official_csv(rows: list[tuple[str, str]]) -> bytes:
    """A ground-truth CSV as the ISIC challenge ships it: no header, CRLF, no final newline."""
    return "\r\n".join(f"{image_id},{label}" for image_id, label in rows).encode()


def write_isic_layout(root: Path, train: dict[str, str], test: dict[str, str]) -> Path:
    """Official ISIC 2016 Part 3 files under ``root``; labels written as given."""
    splits = ((TRAIN_IMAGES, TRAIN_CSV, train), (TEST_IMAGES, TEST_CSV, test))
    for folder, csv_name, rows in splits:
        for index, image_id in enumerate(rows):
            write_jpeg(root / folder / f"{image_id}.jpg", color=(10 * index, 100, 50))
        (root / csv_name).write_bytes(official_csv(list(rows.items())))
    return root


@pytest.fixture
def isic_layout(tmp_path):
    """A tiny ISIC 2016 layout: 4 training images (2 malignant), 3 test images (1 malignant)."""
    train = {
        "ISIC_0000000": "benign",
        "ISIC_0000001": "malignant",
        "ISIC_0000002": "benign",
        "ISIC_0000003": "malignant",
    }
    test = {"ISIC_0000010": "0.0", "ISIC_0000011": "1.0", "ISIC_0000012": "0.0"}
    return write_isic_layout(tmp_path / "isic2016", train, test)


@pytest.fixture
def shared_isic_sample() -> Path:
    """The real 72-image ISIC 2016 sample in ../shared (skipped when absent)."""
    if not SHARED_ISIC_SAMPLE.is_dir():
        pytest.skip(f"{SHARED_ISIC_SAMPLE} is not available")
    return SHARED_ISIC_SAMPLE.resolve()


@pytest.fixture
def make_jpeg():
    """``make_jpeg(path, color=..., size=...)`` writes a small solid-colour JPEG."""
    return write_jpeg


@pytest.fixture
def make_isic_layout():
    """``make_isic_layout(root, train={id: label}, test={id: label})`` writes an ISIC layout."""
    return write_isic_layout
