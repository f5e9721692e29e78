"""The folder data set: root/{train,val,test}/<class>/<image>."""

from __future__ import annotations

import pytest

from synergic.data import NoSuchSplit
from synergic.data.datasets.folder import image_folder
from synergic.errors import SynergicError


@pytest.fixture
def tree(tmp_path, make_jpeg):
    root = tmp_path / "skin"
    for name in ["b1.jpg", "b2.JPG", "deeper/b3.png"]:
        make_jpeg(root / "train" / "benign" / name)
    make_jpeg(root / "train" / "malignant" / "m1.jpg")
    make_jpeg(root / "train" / "nevus" / "n1.jpeg")
    (root / "train" / "benign" / "notes.txt").write_text("not an image")
    (root / "train" / "benign" / ".hidden.jpg").write_text("editor backup")
    (root / "train" / ".cache").mkdir()
    make_jpeg(root / "test" / "malignant" / "t1.jpg")
    make_jpeg(root / "test" / "nevus" / "t2.jpg")
    return root


def test_train_split(tree):
    dataset = image_folder(root=str(tree), split="train")
    assert dataset.classes == ["benign", "malignant", "nevus"]
    assert dataset.ids == [
        "benign/b1.jpg",
        "benign/b2.JPG",
        "benign/deeper/b3.png",
        "malignant/m1.jpg",
        "nevus/n1.jpeg",
    ]
    assert dataset.labels == [0, 0, 0, 1, 2]
    image, label = dataset[3]
    assert (image.mode, label) == ("RGB", 1)


def test_classes_come_from_train_even_when_test_lacks_one(tree):
    dataset = image_folder(root=tree, split="test")
    assert dataset.classes == ["benign", "malignant", "nevus"]
    assert dataset.ids == ["malignant/t1.jpg", "nevus/t2.jpg"]
    assert dataset.labels == [1, 2]


def test_no_val_folder_means_no_such_split(tree):
    with pytest.raises(NoSuchSplit):
        image_folder(root=tree, split="val")


def test_a_val_folder_is_used(tree, make_jpeg):
    make_jpeg(tree / "val" / "benign" / "v.jpg")
    assert image_folder(root=tree, split="val").ids == ["benign/v.jpg"]


def test_extensions_option(tree):
    assert image_folder(root=tree, split="train", extensions=["jpg", ".JPEG"]).ids == [
        "benign/b1.jpg", "benign/b2.JPG", "malignant/m1.jpg", "nevus/n1.jpeg"
    ]
    with pytest.raises(SynergicError, match=r"class folder .*malignant has no images .*\.png"):
        image_folder(root=tree, split="train", extensions="png")


def test_a_test_class_unknown_to_train_is_an_error(tree, make_jpeg):
    make_jpeg(tree / "test" / "benignn" / "x.jpg")
    with pytest.raises(SynergicError, match=r"benignn is not a class of .*did you mean 'benign'"):
        image_folder(root=tree, split="test")


def test_an_empty_training_class_names_the_folder(tree):
    (tree / "train" / "melanoma").mkdir()
    with pytest.raises(SynergicError, match=r"class folder .*train/melanoma has no images"):
        image_folder(root=tree, split="train")


@pytest.mark.parametrize(
    ("layout", "split", "message"),
    [
        ("nothing", "train", "is not a folder"),
        ("no-train", "train", "no train folder"),
        ("no-classes", "train", "has no class folders"),
        ("no-test", "test", "no test folder"),
        ("empty-test", "test", "no images in"),
    ],
)
def test_broken_layouts(tmp_path, make_jpeg, layout, split, message):
    root = tmp_path / "d"
    if layout != "nothing":
        root.mkdir()
    if layout in ("no-classes",):
        (root / "train").mkdir()
    if layout in ("no-test", "empty-test"):
        make_jpeg(root / "train" / "a" / "1.jpg")
    if layout == "empty-test":
        (root / "test" / "a").mkdir(parents=True)
    with pytest.raises(SynergicError, match=message):
        image_folder(root=root, split=split)


def test_root_is_required():
    with pytest.raises(SynergicError, match="needs data.root"):
        image_folder(root=None, split="train")


def test_unknown_split(tree):
    with pytest.raises(SynergicError, match="unknown split"):
        image_folder(root=tree, split="validation")
