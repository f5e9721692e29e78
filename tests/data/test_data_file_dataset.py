"""FileImageDataset: the container every file-based data set returns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synergic.data import ImageDataset
from synergic.data.datasets.base import FileImageDataset, check_split_name
from synergic.errors import SynergicError


@pytest.fixture
def two_images(tmp_path, make_jpeg):
    paths = [
        make_jpeg(tmp_path / "a.jpg", color=(250, 0, 0), size=(64, 32)),
        make_jpeg(tmp_path / "b.jpg", color=(0, 0, 250), size=(32, 32)),
    ]
    return FileImageDataset(["benign", "malignant"], ["a", "b"], [0, 1], paths, name="tiny")


def test_items_are_rgb_images_with_labels(two_images):
    assert isinstance(two_images, ImageDataset)
    assert len(two_images) == 2
    image, label = two_images[1]
    assert (image.mode, image.size, label) == ("RGB", (32, 32), 1)
    assert np.asarray(image)[5, 5, 2] > 240


def test_load_resized_gives_a_square(two_images):
    from synergic.data.preprocess import Preprocessing

    image = two_images.load_resized(0, Preprocessing(16))
    assert (image.dtype, tuple(image.shape)) == (torch.uint8, (3, 16, 16))
    assert two_images.load_resized(0, Preprocessing(8, "nearest"))[0, 4, 4] > 240


def test_class_counts(two_images):
    assert two_images.class_counts() == {"benign": 1, "malignant": 1}


def test_numpy_labels_become_ints(tmp_path):
    dataset = FileImageDataset(["x", "y"], ["a"], [np.int64(1)], [tmp_path / "a.jpg"], name="n")
    assert dataset.labels == [1] and type(dataset.labels[0]) is int


@pytest.mark.parametrize(
    ("ids", "labels", "paths", "message"),
    [
        (["a", "b"], [0], ["a.jpg", "b.jpg"], "2 ids, 1 labels and 2 paths"),
        (["a"], [2], ["a.jpg"], "image 'a' has label 2, expected an integer in 0..1"),
        (["a"], [-1], ["a.jpg"], "label -1"),
        (["a"], ["1"], ["a.jpg"], "label '1'"),
        (["a"], [True], ["a.jpg"], "label True"),
        (["a", "a"], [0, 1], ["a.jpg", "b.jpg"], r"image id 'a' appears twice"),
    ],
)
def test_constructor_rejects_inconsistent_lists(ids, labels, paths, message):
    with pytest.raises(SynergicError, match=message):
        FileImageDataset(["x", "y"], ids, labels, paths, name="bad", source="list.csv")


def test_duplicate_id_error_names_the_source():
    with pytest.raises(SynergicError, match=r"'bad' \(from list.csv\): image id 'a'"):
        FileImageDataset(["x"], ["a", "a"], [0, 0], ["1", "2"], name="bad", source="list.csv")


def test_constructor_rejects_bad_classes():
    with pytest.raises(SynergicError, match="no classes"):
        FileImageDataset([], [], [], [], name="bad")
    with pytest.raises(SynergicError, match="repeat"):
        FileImageDataset(["x", "x"], [], [], [], name="bad")


def test_unreadable_image_is_reported_when_read(tmp_path):
    (tmp_path / "a.jpg").write_text("no")
    dataset = FileImageDataset(["x"], ["a"], [0], [tmp_path / "a.jpg"], name="n")
    with pytest.raises(SynergicError, match="a.jpg"):
        dataset[0]


def test_check_split_name():
    check_split_name("val", "d")
    with pytest.raises(SynergicError, match="unknown split 'tset'.*did you mean 'test'"):
        check_split_name("tset", "d")
