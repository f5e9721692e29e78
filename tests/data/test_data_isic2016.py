"""The isic2016 data set: the official layout, its CSV quirks, and the real sample in ../shared."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from synergic.data import NoSuchSplit, load_image
from synergic.data.checks import check_dataset
from synergic.data.datasets import isic2016 as isic
from synergic.data.paths import default_data_root
from synergic.data.preprocess import Preprocessing
from synergic.errors import SynergicError


def test_training_split_of_a_fabricated_layout(isic_layout):
    dataset = isic.isic2016(root=str(isic_layout), split="train")
    assert dataset.classes == ["benign", "malignant"]
    assert dataset.ids == ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002", "ISIC_0000003"]
    assert dataset.labels == [0, 1, 0, 1]
    assert dataset.paths[1] == isic_layout / isic.TRAIN_IMAGES / "ISIC_0000001.jpg"
    image, label = dataset[1]
    assert (image.mode, image.size, label) == ("RGB", (16, 16), 1)


def test_test_split_uses_numeric_labels(isic_layout):
    dataset = isic.isic2016(root=isic_layout, split="test")
    assert dataset.ids == ["ISIC_0000010", "ISIC_0000011", "ISIC_0000012"]
    assert dataset.labels == [0, 1, 0]


def test_there_is_no_validation_split(isic_layout):
    with pytest.raises(NoSuchSplit):
        isic.isic2016(root=isic_layout, split="val")


def test_unknown_split(isic_layout):
    with pytest.raises(SynergicError, match="unknown split 'training'"):
        isic.isic2016(root=isic_layout, split="training")


@pytest.mark.parametrize(
    ("value", "label"),
    [("benign", 0), ("Malignant", 1), ("BENIGN", 0), ("0", 0), ("1", 1), ("0.0", 0), ("1.0", 1),
     (" 1.0 ", 1)],
)
def test_label_spellings(value, label):
    assert isic.parse_label(value) == label


@pytest.mark.parametrize("value", ["2", "0.5", "maybe", "", "nan"])
def test_unknown_label_spellings(value):
    assert isic.parse_label(value) is None


def test_either_spelling_in_either_file(tmp_path, make_isic_layout):
    root = make_isic_layout(
        tmp_path, {"ISIC_1": "1.0", "ISIC_2": "0"}, {"ISIC_3": "malignant", "ISIC_4": "Benign"}
    )
    assert isic.isic2016(root=root, split="train").labels == [1, 0]
    assert isic.isic2016(root=root, split="test").labels == [1, 0]


def test_lf_line_ends_final_newline_and_bom_are_fine(isic_layout):
    csv_path = isic_layout / isic.TRAIN_CSV
    text = csv_path.read_bytes().decode().replace("\r\n", "\n") + "\n\n"
    csv_path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert len(isic.isic2016(root=isic_layout, split="train")) == 4


def test_a_header_row_is_skipped(isic_layout):
    csv_path = isic_layout / isic.TRAIN_CSV
    csv_path.write_bytes(b"image_id,melanoma\r\n" + csv_path.read_bytes())
    assert len(isic.isic2016(root=isic_layout, split="train")) == 4


def test_images_not_in_the_csv_are_ignored(isic_layout, make_jpeg):
    make_jpeg(isic_layout / isic.TRAIN_IMAGES / "ISIC_0009999.jpg")
    make_jpeg(isic_layout / isic.TRAIN_IMAGES / "ISIC_0000000_superpixels.png")
    assert "ISIC_0009999" not in isic.isic2016(root=isic_layout, split="train").ids


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(SynergicError) as caught:
        isic.isic2016(root=tmp_path / "nothing", split="train")
    assert str(caught.value) == (
        f"ISIC 2016 not found at {tmp_path / 'nothing'}: "
        "run 'synergic data download isic2016' or set data.root"
    )


def test_a_missing_csv_is_named(isic_layout):
    (isic_layout / isic.TEST_CSV).unlink()
    isic.isic2016(root=isic_layout, split="train")  # the other split is still fine
    with pytest.raises(SynergicError, match=rf"not found at .*\(missing {isic.TEST_CSV}\)"):
        isic.isic2016(root=isic_layout, split="test")


def test_a_missing_image_names_the_file_and_the_csv(isic_layout):
    (isic_layout / isic.TRAIN_IMAGES / "ISIC_0000002.jpg").unlink()
    expected = r"ISIC_0000002\.jpg is missing \(listed in .*Training_GroundTruth\.csv\)"
    with pytest.raises(SynergicError, match=expected):
        isic.isic2016(root=isic_layout, split="train")


def test_an_unknown_label_names_the_csv_line_and_value(isic_layout):
    csv_path = isic_layout / isic.TEST_CSV
    csv_path.write_bytes(csv_path.read_bytes().replace(b"ISIC_0000011,1.0", b"ISIC_0000011,0.7"))
    with pytest.raises(SynergicError, match=r"Test_GroundTruth\.csv line 2: unknown label '0\.7'"):
        isic.isic2016(root=isic_layout, split="test")


def test_a_duplicated_id_names_the_csv_and_id(isic_layout):
    csv_path = isic_layout / isic.TRAIN_CSV
    csv_path.write_bytes(csv_path.read_bytes() + b"\r\nISIC_0000001,benign")
    expected = r"Training_GroundTruth\.csv: image id ISIC_0000001 appears twice \(lines 2 and 5\)"
    with pytest.raises(SynergicError, match=expected):
        isic.isic2016(root=isic_layout, split="train")


def test_a_row_without_label(isic_layout):
    csv_path = isic_layout / isic.TRAIN_CSV
    csv_path.write_bytes(csv_path.read_bytes() + b"\r\nISIC_0000009")
    with pytest.raises(SynergicError, match="line 5: expected 'image_id,label'"):
        isic.isic2016(root=isic_layout, split="train")


def test_default_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SYNERGIC_DATA_DIR", str(tmp_path / "data"))
    assert default_data_root("isic2016") == tmp_path / "data" / "isic2016"
    monkeypatch.delenv("SYNERGIC_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_data_root("isic2016") == tmp_path / "cache" / "synergic" / "isic2016"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_root("isic2016") == tmp_path / "home" / ".cache" / "synergic" / "isic2016"


def test_root_none_reads_the_default_root(monkeypatch, isic_layout):
    monkeypatch.setenv("SYNERGIC_DATA_DIR", str(isic_layout.parent))
    assert len(isic.isic2016(root=None, split="test")) == 3


def test_download_true_downloads_only_when_missing(monkeypatch, tmp_path, make_isic_layout):
    calls = []

    def fake_download(root, **options):
        calls.append(Path(root))
        make_isic_layout(Path(root), {"ISIC_1": "benign", "ISIC_2": "malignant"}, {"ISIC_3": "1.0"})
        return Path(root)

    monkeypatch.setattr(isic, "download", fake_download)
    root = tmp_path / "fresh"
    assert isic.isic2016(root=root, split="test", download=True).labels == [1]
    assert calls == [root]
    assert len(isic.isic2016(root=root, split="train", download=True)) == 2
    assert calls == [root]  # already there: no second download
    with pytest.raises(NoSuchSplit):
        isic.isic2016(root=tmp_path / "other", split="val", download=True)
    assert calls == [root]


@pytest.mark.shared_data
def test_the_real_sample(shared_isic_sample):
    train = isic.isic2016(root=shared_isic_sample, split="train")
    test = isic.isic2016(root=shared_isic_sample, split="test")
    assert (len(train), len(test)) == (48, 24)
    assert Counter(train.labels) == {0: 36, 1: 12}
    assert Counter(test.labels) == {0: 18, 1: 6}
    assert check_dataset(train, split="train", name="isic2016") == {"benign": 36, "malignant": 12}
    check_dataset(test, split="test", name="isic2016", num_classes=2)
    assert all(image_id.startswith("ISIC_") for image_id in train.ids + test.ids)
    assert not set(train.ids) & set(test.ids)


@pytest.mark.shared_data
def test_the_real_sample_decodes_and_resizes(shared_isic_sample):
    train = isic.isic2016(root=shared_isic_sample, split="train")
    # ISIC_0000390 is an untouched original of 3072x2304: decoded at 1/8 scale for 224 pixels
    index = train.ids.index("ISIC_0000390")
    image = train.load_resized(index, Preprocessing(224))
    assert (image.dtype, tuple(image.shape)) == (torch.uint8, (3, 224, 224))
    array = image.numpy()
    assert 20 < array.mean() < 240 and array.std() > 5  # a real photograph, not a blank
    assert load_image(train.paths[index], min_size=224).size == (384, 288)
    full, label = train[index]
    assert (full.mode, full.size) == ("RGB", (3072, 2304))
    assert label == train.labels[index]


# -- unpacked in the wrong place: hints (issue 12) -------------------------------------------------


def test_images_unpacked_one_folder_too_deep(isic_layout):
    folder = isic_layout / isic.TRAIN_IMAGES
    nested = folder / isic.TRAIN_IMAGES
    nested.mkdir()
    for image in sorted(folder.glob("*.jpg")):
        image.rename(nested / image.name)
    with pytest.raises(SynergicError) as caught:
        isic.isic2016(root=isic_layout, split="train")
    assert str(caught.value) == (
        f"ISIC 2016 image {folder / 'ISIC_0000000.jpg'} is missing (listed in "
        f"{isic_layout / isic.TRAIN_CSV}): the images were unpacked one folder too deep, into "
        f"{nested}; move them up into {folder}"
    )


def test_official_files_one_level_below_root_with_macosx_beside(tmp_path, make_isic_layout):
    inner = make_isic_layout(tmp_path / "downloads" / "ISIC2016", {"ISIC_1": "benign"},
                             {"ISIC_2": "1.0"})
    macosx = tmp_path / "downloads" / "__MACOSX" / "ISIC2016" / isic.TRAIN_IMAGES
    macosx.mkdir(parents=True)
    (macosx / "._ISIC_1.jpg").write_bytes(b"\x00\x05\x16\x07".ljust(4096, b"\x00"))
    (macosx.parent / f"._{isic.TRAIN_CSV}").write_bytes(b"\x00\x05\x16\x07".ljust(4096, b"\x00"))
    root = tmp_path / "downloads"
    with pytest.raises(SynergicError) as caught:
        isic.isic2016(root=root, split="train")
    assert str(caught.value) == (
        f"ISIC 2016 not found at {root}; the official files are in {inner} (the __MACOSX folder "
        f"in {root} is macOS metadata, not images: ignore or delete it): set data.root to {inner}"
    )
    assert len(isic.isic2016(root=inner, split="train")) == 1


def test_two_levels_below_root_and_data_root_set_to_the_image_folder(tmp_path, make_isic_layout):
    inner = make_isic_layout(tmp_path / "a" / "b", {"ISIC_1": "benign"}, {"ISIC_2": "1.0"})
    with pytest.raises(SynergicError, match=rf"in {inner}: set data.root to {inner}$"):
        isic.isic2016(root=tmp_path, split="test")
    with pytest.raises(SynergicError, match=rf"the official files are in {inner}: set data.root"):
        isic.isic2016(root=inner / isic.TRAIN_IMAGES, split="train")


def test_data_root_inside_macosx(tmp_path, make_isic_layout):
    make_isic_layout(tmp_path / "ISIC2016", {"ISIC_1": "benign"}, {"ISIC_2": "1.0"})
    inside = tmp_path / "__MACOSX" / "ISIC2016"
    inside.mkdir(parents=True)
    with pytest.raises(SynergicError) as caught:
        isic.isic2016(root=inside, split="train")
    assert str(caught.value) == (
        f"ISIC 2016 not found at {inside}: data.root is inside a __MACOSX folder, which holds macOS "
        f"metadata (._ files), not images; set data.root to {tmp_path / 'ISIC2016'}"
    )


def test_found_elsewhere_is_not_downloaded_again(monkeypatch, tmp_path, make_isic_layout):
    monkeypatch.setattr(isic, "download", lambda *a, **k: pytest.fail("downloaded"))
    inner = make_isic_layout(tmp_path / "ISIC2016", {"ISIC_1": "benign"}, {"ISIC_2": "1.0"})
    with pytest.raises(SynergicError, match=f"set data.root to {inner}"):
        isic.isic2016(root=tmp_path, split="train", download=True)


def test_no_hint_when_nothing_is_near(tmp_path):
    (tmp_path / "nothing" / "photos").mkdir(parents=True)
    with pytest.raises(SynergicError, match=r"not found at .*nothing: run 'synergic data download"):
        isic.isic2016(root=tmp_path / "nothing", split="train")


def test_a_hand_unpacked_copy_with_mac_sidecars_counts_as_unpacked(isic_layout):
    from synergic.data import download

    folder = isic_layout / isic.TRAIN_IMAGES
    for image in sorted(folder.glob("*.jpg")):
        (folder / f"._{image.name}").write_bytes(b"\x00\x05\x16\x07".ljust(4096, b"\x00"))
    csv_path = isic_layout / isic.TRAIN_CSV
    assert download.has_one_image_per_row(
        folder, lambda: [image_id for image_id, _ in isic.read_ground_truth(csv_path)]
    )


@pytest.mark.shared_data
def test_the_real_sample_one_folder_down(shared_isic_sample, tmp_path):
    (tmp_path / "isic").mkdir()
    (tmp_path / "isic" / "ISIC2016").symlink_to(shared_isic_sample, target_is_directory=True)
    with pytest.raises(SynergicError, match=rf"set data.root to {tmp_path / 'isic' / 'ISIC2016'}$"):
        isic.isic2016(root=tmp_path / "isic", split="test")
    assert len(isic.isic2016(root=tmp_path / "isic" / "ISIC2016", split="test")) == 24
