"""The csv data set: images listed in CSV files with a header row."""

from __future__ import annotations

import pytest

from synergic.data import NoSuchSplit
from synergic.data.datasets.csv_dataset import csv_dataset
from synergic.errors import SynergicError


@pytest.fixture
def root(tmp_path, make_jpeg):
    root = tmp_path / "derm"
    for name in ["a.jpg", "b.png", "c.jpg", "sub/d.jpeg", "t1.jpg", "t2.jpg"]:
        make_jpeg(root / "images" / name)
    (root / "train.csv").write_text(
        "image,diagnosis,label\n"
        "images/a.jpg,x,nevus\n"
        "images/b,x,melanoma\n"
        "images/c,x,nevus\n"
        "images/sub/d,x,melanoma\n"
    )
    (root / "test.csv").write_text("image,label\r\nimages/t1,melanoma\r\nimages/t2,nevus")
    return root


def options(**overrides):
    return {"train_csv": "train.csv", "test_csv": "test.csv", **overrides}


def test_train_split(root):
    dataset = csv_dataset(root=str(root), split="train", **options())
    assert dataset.classes == ["melanoma", "nevus"]
    assert dataset.ids == ["images/a.jpg", "images/b", "images/c", "images/sub/d"]
    assert dataset.labels == [1, 0, 1, 0]
    assert [p.name for p in dataset.paths] == ["a.jpg", "b.png", "c.jpg", "d.jpeg"]
    image, label = dataset[1]
    assert (image.mode, label) == ("RGB", 0)


def test_test_split_uses_the_train_classes(root):
    dataset = csv_dataset(root=root, split="test", **options())
    assert dataset.classes == ["melanoma", "nevus"]
    assert dataset.labels == [0, 1]


def test_val_split_without_val_csv(root):
    with pytest.raises(NoSuchSplit):
        csv_dataset(root=root, split="val", **options())


def test_val_csv_and_absolute_paths(root):
    (root / "val.csv").write_text("image,label\nimages/t2.jpg,nevus\n")
    dataset = csv_dataset(root=root, split="val", **options(val_csv=str(root / "val.csv")))
    assert (dataset.ids, dataset.labels) == (["images/t2.jpg"], [1])


def test_given_classes_fix_the_order_and_allow_indices(root):
    (root / "test.csv").write_text("image,label\nimages/t1,1\nimages/t2,nevus\n")
    dataset = csv_dataset(root=root, split="test", **options(classes=["nevus", "melanoma"]))
    assert dataset.classes == ["nevus", "melanoma"]
    assert dataset.labels == [1, 0]


def test_integer_labels_sort_numerically(tmp_path, make_jpeg):
    for index in range(11):
        make_jpeg(tmp_path / f"{index}.jpg")
    rows = "".join(f"{index}.jpg,{index}\n" for index in range(11))
    (tmp_path / "all.csv").write_text("file,grade\n" + rows)
    dataset = csv_dataset(
        root=tmp_path, split="train", train_csv="all.csv", test_csv="all.csv",
        id_column="file", label_column="grade",
    )
    assert dataset.classes == [str(index) for index in range(11)]
    assert dataset.labels == list(range(11))


def test_extension_option(root, make_jpeg):
    make_jpeg(root / "images" / "b.jpg")  # b.jpg and b.png both exist now
    (root / "train.csv").write_text("image,label\nimages/b,melanoma\nimages/a.jpg,nevus\n")
    assert csv_dataset(root=root, split="train", **options()).paths[0].name == "b.jpg"
    dataset = csv_dataset(root=root, split="train", **options(extension="png"))
    assert [p.name for p in dataset.paths] == ["b.png", "a.jpg"]
    with pytest.raises(SynergicError, match=r"image for 'images/t1' .*test.csv line 2.*\.png"):
        csv_dataset(root=root, split="test", **options(extension=".png"))


def test_missing_column_lists_the_columns(root):
    expected = (
        r"train.csv has no column 'target' \(its columns: image, diagnosis, label\); "
        r"set data.options.label_column"
    )
    with pytest.raises(SynergicError, match=expected):
        csv_dataset(root=root, split="train", **options(label_column="target"))


def test_unknown_label_names_csv_line_and_value(root):
    (root / "test.csv").write_text("image,label\nimages/t1,melanoma\nimages/t2,naevus\n")
    expected = r"test.csv line 3: unknown label 'naevus'.*classes: melanoma, nevus"
    with pytest.raises(SynergicError, match=expected):
        csv_dataset(root=root, split="test", **options())


def test_index_label_out_of_range(root):
    (root / "test.csv").write_text("image,label\nimages/t1,2\n")
    with pytest.raises(SynergicError, match=r"unknown label '2'.* or 0..1"):
        csv_dataset(root=root, split="test", **options(classes=["nevus", "melanoma"]))


def test_duplicated_id(root):
    rows = ["image,label", "images/t1,nevus", "images/t2,nevus", "images/t1,nevus"]
    (root / "test.csv").write_text("\n".join(rows) + "\n")
    expected = r"test.csv: image id 'images/t1' appears twice \(lines 2 and 4\)"
    with pytest.raises(SynergicError, match=expected):
        csv_dataset(root=root, split="test", **options())


def test_missing_image(root):
    (root / "test.csv").write_text("image,label\nimages/t9,nevus\n")
    expected = r"image for 'images/t9' \(.*test.csv line 2\) not found"
    with pytest.raises(SynergicError, match=expected):
        csv_dataset(root=root, split="test", **options())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty; expected a header row"),
        ("image,label\n", "lists no images"),
        ("image,label\nimages/t1\n", "line 2: 1 cells"),
        ("image,label\n,nevus\n", "line 2: empty 'image'"),
    ],
)
def test_malformed_test_csv(root, content, message):
    (root / "test.csv").write_text(content)
    with pytest.raises(SynergicError, match=message):
        csv_dataset(root=root, split="test", **options())


def test_missing_csv_file(root):
    with pytest.raises(SynergicError, match=r"test_csv file not found: .*nope.csv"):
        csv_dataset(root=root, split="test", **options(test_csv="nope.csv"))


def test_bad_classes_option(root):
    with pytest.raises(SynergicError, match="classes must be a list"):
        csv_dataset(root=root, split="train", **options(classes="melanoma"))
    with pytest.raises(SynergicError, match="repeat"):
        csv_dataset(root=root, split="train", **options(classes=["a", "a"]))
