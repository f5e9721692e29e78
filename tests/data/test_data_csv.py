"""The csv data set: images listed in CSV files with a header row."""

from __future__ import annotations

import sys

import pytest

from synergic.data import NoSuchSplit
from synergic.data.datasets.csv_dataset import csv_dataset
from synergic.data.listing import ImageListingWarning
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
        ("image,label\nimages/t1\n", "no label in column 'label' on line 2;"),
        ("label,image\nnevus\n", "line 2: 1 cells, but the header has 2"),
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


# -- label hygiene, sidecars, the same file twice (issue 12) -------------------------------------


def write_train(root, *rows: str) -> None:
    (root / "train.csv").write_text("image,diagnosis,label\n" + "".join(f"{r}\n" for r in rows))


def test_blank_labels_name_the_rows(root):
    write_train(root, "images/a.jpg,x,nevus", "images/b,x,", "images/c,x,melanoma",
                "images/sub/d,x,  ")
    with pytest.raises(SynergicError) as caught:
        csv_dataset(root=root, split="train", **options())
    assert str(caught.value) == (
        f"{root / 'train.csv'}: no label in column 'label' on lines 3, 5 (2 rows); write each "
        "image's class there, or remove the rows"
    )
    # ... whichever split is asked for, since the train CSV defines the classes.
    with pytest.raises(SynergicError, match=r"train.csv: no label .* lines 3, 5 \(2 rows\)"):
        csv_dataset(root=root, split="test", **options())


def test_many_blank_labels_are_counted(root, make_jpeg):
    for k in range(9):
        make_jpeg(root / "more" / f"{k}.jpg")
    write_train(root, "images/a.jpg,x,nevus", *[f"more/{k}.jpg,x," for k in range(9)])
    with pytest.raises(SynergicError, match=r"on lines 3, 4, 5, 6, 7 and 4 more \(9 rows\);"):
        csv_dataset(root=root, split="train", **options())


def test_a_missing_label_cell(root):
    write_train(root, "images/a.jpg,x,nevus", "images/b,x", "images/c,x,melanoma")
    with pytest.raises(SynergicError, match=r"train.csv: no label in column 'label' on line 3;"):
        csv_dataset(root=root, split="train", **options())


@pytest.mark.parametrize(
    ("stray", "rows_of_stray"),
    [("Melanoma", "line 4"), ("melanoma ", "line 4"), (" MELANOMA", "line 4")],
)
def test_labels_differing_only_in_case_or_spaces(root, stray, rows_of_stray):
    write_train(root, "images/a.jpg,x,nevus", "images/b,x,melanoma", f"images/c,x,{stray}",
                "images/sub/d,x,melanoma")
    with pytest.raises(SynergicError) as caught:
        csv_dataset(root=root, split="train", **options())
    assert str(caught.value) == (
        f"{root / 'train.csv'}: label {stray!r} on {rows_of_stray} and 'melanoma' on 2 rows differ "
        "only in letter case or surrounding spaces (did you mean 'melanoma'?); write one spelling "
        "in every row"
    )


def test_the_spelling_of_the_classes_option_is_preferred(root):
    write_train(root, "images/a.jpg,x,Melanoma", "images/b,x,Melanoma", "images/c,x,melanoma",
                "images/sub/d,x,nevus")
    with pytest.raises(SynergicError, match=r"label 'Melanoma' on lines 2, 3 \(2 rows\) and "
                                            r"'melanoma' on 1 row .*did you mean 'melanoma'"):
        csv_dataset(root=root, split="train", **options(classes=["nevus", "melanoma"]))


def test_spaces_written_the_same_way_everywhere_are_fine(root):
    (root / "train.csv").write_text(
        "image, label\nimages/a.jpg, nevus\nimages/b, melanoma\nimages/c, nevus\n"
    )
    dataset = csv_dataset(root=root, split="train", **options())
    assert (dataset.classes, dataset.labels) == (["melanoma", "nevus"], [1, 0, 1])


def test_a_test_label_spelled_differently_from_train(root):
    (root / "test.csv").write_text("image,label\nimages/t1,Melanoma\nimages/t2,Melanoma\n")
    with pytest.raises(SynergicError) as caught:
        csv_dataset(root=root, split="test", **options())
    assert str(caught.value) == (
        f"{root / 'test.csv'} lines 2, 3 (2 rows): unknown label 'Melanoma' in column 'label' "
        "(did you mean 'melanoma'?); classes: melanoma, nevus"
    )


def test_a_label_outside_the_classes_option_names_the_row(root):
    with pytest.raises(SynergicError) as caught:
        csv_dataset(root=root, split="train", **options(classes=["nevus", "Melanoma"]))
    assert str(caught.value) == (
        f"{root / 'train.csv'} lines 3, 5 (2 rows): unknown label 'melanoma' in column 'label' "
        "(did you mean 'Melanoma'?); classes of data.options.classes: nevus, Melanoma or 0..1"
    )


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (["nevus", "Nevus"], r"classes repeat a name \(letter case aside\)"),
        (["nevus ", "melanoma"], r"class 'nevus ' in data.options.classes has surrounding spaces"),
        ([" ", "melanoma"], "classes must be a list of class names"),
    ],
)
def test_bad_classes_spellings(root, classes, message):
    with pytest.raises(SynergicError, match=message):
        csv_dataset(root=root, split="train", **options(classes=classes))


def test_a_row_naming_a_macos_sidecar(root):
    (root / "images" / "._a.jpg").write_bytes(b"\x00\x05\x16\x07".ljust(4096, b"\x00"))
    (root / "test.csv").write_text("image,label\nimages/t1,nevus\nimages/._a.jpg,nevus\n")
    with pytest.raises(SynergicError) as caught:
        csv_dataset(root=root, split="test", **options())
    assert str(caught.value) == (
        f"{root / 'test.csv'} line 3: 'images/._a.jpg' is a macOS AppleDouble sidecar (metadata) "
        f"({root / 'images' / '._a.jpg'}), not an image; remove the row"
    )


def test_two_rows_naming_one_file(root):
    rows = "images/t1,nevus\nimages/t2,nevus\nimages/t1.jpg,nevus\n"
    (root / "test.csv").write_text("image,label\n" + rows)
    expected = r"test.csv: lines 2 and 4 name the same file .*t1\.jpg;"
    with pytest.raises(SynergicError, match=expected):
        csv_dataset(root=root, split="test", **options())


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")
def test_two_rows_naming_one_file_through_a_link(root):
    (root / "images" / "t1-link.jpg").symlink_to(root / "images" / "t1.jpg")
    (root / "test.csv").write_text("image,label\nimages/t1,nevus\nimages/t1-link.jpg,nevus\n")
    with pytest.raises(SynergicError, match=r"lines 2 and 3 name the same file"):
        csv_dataset(root=root, split="test", **options())


def test_a_test_row_naming_a_training_image_is_named(root, recwarn):
    (root / "test.csv").write_text("image,label\nimages/t1,nevus\nimages/c.jpg,nevus\n")
    with pytest.warns(ImageListingWarning) as caught:
        csv_dataset(root=root, split="test", **options())
    assert [str(w.message) for w in caught] == [
        f"data set 'csv': 1 of the 2 images of {root / 'test.csv'} are also listed in "
        f"{root / 'train.csv'} (e.g. {root / 'images' / 'c.jpg'}), so they are not held out; "
        "remove them from one of the CSVs"
    ]
    (root / "val.csv").write_text("image,label\nimages/t1.jpg,nevus\n")
    with pytest.warns(ImageListingWarning, match=r"are also listed in .*val\.csv"):
        csv_dataset(root=root, split="test", **options(val_csv="val.csv"))


def test_a_rare_label_that_looks_like_a_common_one_is_warned_about(tmp_path):
    from synergic.data.datasets.csv_dataset import csv_dataset

    rows = ["image,label"] + [f"img{i},nevus" for i in range(6)] + [
        f"img{i},melanoma" for i in range(6, 9)] + ["img9,naevus"]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "test.csv").write_text("image,label\nimg0,nevus\n")
    for i in range(10):
        (tmp_path / f"img{i}.png").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"label 'naevus' on line 11 is a class of 1 image and "
                                         r"looks like 'nevus' \(6 images\): a typo\?"):
        dataset = csv_dataset(root=tmp_path, split="train", train_csv="train.csv",
                              test_csv="test.csv")
    assert dataset.classes == ["melanoma", "naevus", "nevus"]  # a warning, not a change
    with pytest.raises(SynergicError, match="naevus"):
        csv_dataset(root=tmp_path, split="train", train_csv="train.csv", test_csv="test.csv",
                    classes=["nevus", "melanoma"])
