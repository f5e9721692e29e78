"""The folder data set: root/{train,val,test}/<class>/<image>."""

from __future__ import annotations

import sys

import pytest

from synergic.data import NoSuchSplit
from synergic.data.datasets.folder import image_folder
from synergic.data.listing import ImageListingWarning
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


# -- what the listing skips, each file once, label hygiene (issue 12) ------------------------------


def apple_double() -> bytes:
    """4 KB of macOS AppleDouble metadata, as ``._name.jpg`` beside ``name.jpg``."""
    return (b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ").ljust(4096, b"\x00")


def test_what_macos_and_windows_leave_beside_images_is_skipped(tree, make_jpeg):
    before = image_folder(root=tree, split="train")
    benign = tree / "train" / "benign"
    (benign / "._b1.jpg").write_bytes(apple_double())
    (benign / "Thumbs.db").write_bytes(bytes(64))
    (benign / "desktop.ini").write_text("[.ShellClassInfo]\r\n")
    make_jpeg(benign / "@eaDir" / "b1.jpg" / "SYNOFILE_THUMB_M.jpg")
    make_jpeg(benign / ".ipynb_checkpoints" / "b1-checkpoint.jpg")
    # A __MACOSX folder in train/ would otherwise be a class of its own.
    (tree / "train" / "__MACOSX" / "benign").mkdir(parents=True)
    (tree / "train" / "__MACOSX" / "benign" / "._b1.jpg").write_bytes(apple_double())
    make_jpeg(tree / "train" / "$RECYCLE.BIN" / "old.jpg")
    after = image_folder(root=tree, split="train")
    assert (after.classes, after.ids, after.labels) == (before.classes, before.ids, before.labels)


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")
def test_a_folder_linked_twice_into_a_class_is_counted_once(tree):
    benign = tree / "train" / "benign"
    (benign / "deeper-again").symlink_to(benign / "deeper", target_is_directory=True)
    with pytest.warns(ImageListingWarning, match=r"deeper-again is .*deeper, reached twice"):
        dataset = image_folder(root=tree, split="train")
    assert dataset.ids.count("benign/deeper/b3.png") == 1
    assert len(dataset) == 5


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")
def test_one_file_in_two_classes_is_an_error(tree):
    (tree / "train" / "nevus" / "m1.jpg").symlink_to(tree / "train" / "malignant" / "m1.jpg")
    expected = r"nevus/m1\.jpg and .*malignant/m1\.jpg are the same file .* 'malignant' and 'nevus'"
    with pytest.raises(SynergicError, match=expected):
        image_folder(root=tree, split="train")


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")
def test_a_val_folder_linking_to_train_is_named(tree, recwarn):
    (tree / "val").symlink_to(tree / "train", target_is_directory=True)
    with pytest.warns(ImageListingWarning) as caught:
        validation = image_folder(root=tree, split="val")
    assert len(validation) == 5
    [warning] = [w for w in caught if "not held out" in str(w.message)]
    assert str(warning.message).startswith(
        f"data set 'folder': 5 of the 5 images of {tree / 'val'} are the same files as images of "
        f"{tree / 'train'} (e.g. {tree / 'val' / 'benign' / 'b1.jpg'} is "
    )
    # The training split itself says nothing; a test split that shares nothing neither.
    recwarn.clear()
    image_folder(root=tree, split="train")
    image_folder(root=tree, split="test")
    assert not [w for w in recwarn if issubclass(w.category, ImageListingWarning)]


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")
def test_a_test_image_that_is_a_training_image_is_named(tree):
    (tree / "test" / "nevus" / "copy.jpg").symlink_to(tree / "train" / "nevus" / "n1.jpeg")
    with pytest.warns(ImageListingWarning, match=r"1 of the 3 images of .*test are the same files"):
        image_folder(root=tree, split="test")


@pytest.mark.parametrize("stray", ["Benign", "benign ", "BENIGN"])
def test_class_folders_differing_only_in_case_or_spaces(tree, make_jpeg, stray):
    make_jpeg(tree / "train" / stray / "x.jpg")
    message = (
        f"data set 'folder': class folders {tree / 'train' / stray}/ (1 image) and "
        f"{tree / 'train' / 'benign'}/ (3 images) differ only in letter case or surrounding "
        "spaces (did you mean 'benign'?); move the images into one folder"
    )
    with pytest.raises(SynergicError) as caught:
        image_folder(root=tree, split="test")
    assert str(caught.value) == message


def test_a_test_folder_spelled_differently_from_train(tree, make_jpeg):
    make_jpeg(tree / "test" / "Benign" / "x.jpg")
    expected = r"test/Benign is not a class of .*did you mean 'benign'"
    with pytest.raises(SynergicError, match=expected):
        image_folder(root=tree, split="test")


def test_the_classes_option_fixes_the_label_order(tree):
    dataset = image_folder(root=tree, split="train", classes=["nevus", "malignant", "benign"])
    assert dataset.classes == ["nevus", "malignant", "benign"]
    assert list(zip(dataset.ids, dataset.labels)) == [
        ("nevus/n1.jpeg", 0), ("malignant/m1.jpg", 1),
        ("benign/b1.jpg", 2), ("benign/b2.JPG", 2), ("benign/deeper/b3.png", 2),
    ]
    test = image_folder(root=tree, split="test", classes=["nevus", "malignant", "benign"])
    assert list(zip(test.ids, test.labels)) == [("nevus/t2.jpg", 0), ("malignant/t1.jpg", 1)]


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (["benign", "malignant"], r"class folder .*train/nevus is not a class of "
                                  r"data.options.classes; classes: benign, malignant"),
        (["benign", "malignent", "nevus"],
         r"classes names 'malignent' but .*train has no folder 'malignent' \(did you mean "
         r"'malignant'\?\); its class folders: benign, malignant, nevus"),
        (["benign", "malignant", "nevus", "melanoma"], r"no folder 'melanoma'; its class folders"),
        (["benign", "malignant", "Nevus"], r"has no folder 'Nevus' \(did you mean 'nevus'\?\)"),
        (["benign", "Benign", "nevus"], r"names 'benign' twice \(letter case"),
        ("benign", "must be a list of class folder names"),
        (["benign", ""], "must be a list of class folder names"),
    ],
)
def test_classes_option_errors(tree, classes, message):
    with pytest.raises(SynergicError, match=message):
        image_folder(root=tree, split="train", classes=classes)
