"""Reading MedMNIST ``.npz`` files: shapes, labels, ids, classes, and the errors users meet."""

from __future__ import annotations

import os
import pickle
import time

import numpy as np
import pytest
import torch
from synergic.errors import SynergicError

from synergic_medmnist import MedMNIST, medmnist_dataset
from synergic_medmnist.dataset import default_root, parse_file_name
from synergic_medmnist.flags import FLAGS, file_name, official_url


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_grey_images_come_back_as_three_equal_uint8_channels(tmp_path, write_npz):
    _, arrays = write_npz(tmp_path / "pneumoniamnist.npz", num_classes=2)
    data = medmnist_dataset(root=str(tmp_path), split="train", flag="pneumoniamnist")

    assert len(data) == len(arrays["train_labels"]) == 20
    assert data.classes == ["normal", "pneumonia"]
    assert data.labels == arrays["train_labels"][:, 0].tolist()
    assert all(isinstance(label, int) for label in data.labels)
    image, label = data[3]
    assert image.dtype == torch.uint8 and image.shape == (3, 28, 28)
    assert image.is_contiguous()
    for channel in range(3):
        assert torch.equal(image[channel], torch.from_numpy(arrays["train_images"][3]))
    assert label == data.labels[3] == 1
    assert data.channels == 1 and data.image_size == (28, 28)


def test_rgb_images_are_channels_first_with_ids_and_class_names(tmp_path, write_npz):
    _, arrays = write_npz(tmp_path / "dermamnist.npz", rgb=True, num_classes=7)
    data = medmnist_dataset(root=tmp_path, split="train", flag="DermaMNIST")

    image, label = data[12]
    expected = torch.from_numpy(arrays["train_images"][12]).permute(2, 0, 1)
    assert torch.equal(image, expected)
    assert data.ids[12] == "dermamnist_train_00012"
    assert len(set(data.ids)) == len(data)
    assert data.classes == list(FLAGS["dermamnist"].classes)
    assert data.classes[label] == data.classes[12 % 7] == "melanocytic nevi"
    assert data.channels == 3


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_each_split_reads_its_own_arrays(tmp_path, write_npz, split):
    _, arrays = write_npz(tmp_path / "bloodmnist.npz", rgb=True, num_classes=8)
    data = medmnist_dataset(root=tmp_path, split=split, flag="bloodmnist")

    assert len(data) == len(arrays[f"{split}_images"])
    assert data.ids[0] == f"bloodmnist_{split}_00000"
    last = torch.from_numpy(arrays[f"{split}_images"][-1]).permute(2, 0, 1)
    assert torch.equal(data[-1][0], last)


def test_larger_sizes_read_flag_underscore_size_files(tmp_path, write_npz):
    write_npz(tmp_path / "organamnist_64.npz", size=64, num_classes=11)
    data = medmnist_dataset(root=tmp_path, split="val", flag="organamnist", size=64)
    assert data[0][0].shape == (3, 64, 64)
    assert data.classes[10] == "spleen"


def test_mmap_gives_the_same_data_and_re_extracts_a_newer_file(tmp_path, write_npz):
    path, arrays = write_npz(tmp_path / "octmnist.npz", num_classes=4)
    in_memory = medmnist_dataset(root=tmp_path, split="test", flag="octmnist")
    mapped = medmnist_dataset(root=tmp_path, split="test", flag="octmnist", mmap=True)

    assert isinstance(mapped._images, np.memmap)
    assert (tmp_path / "octmnist.extracted" / "test_images.npy").is_file()
    assert mapped.labels == in_memory.labels and mapped.ids == in_memory.ids
    for index in range(len(mapped)):
        assert torch.equal(mapped[index][0], in_memory[index][0])

    # Replace the file (as a fresh download would): the stale extraction must not be used.
    newer = {key: value.copy() for key, value in arrays.items()}
    newer["test_images"][:] = 7
    write_npz(path, newer)
    later = time.time() + 5
    os.utime(path, (later, later))
    remapped = medmnist_dataset(root=tmp_path, split="test", flag="octmnist", mmap=True)
    assert int(remapped[0][0].max()) == 7


def test_a_file_given_as_root_names_the_flag_and_size(tmp_path, write_npz):
    path, _ = write_npz(
        tmp_path / "elsewhere" / "retinamnist_128.npz", rgb=True, size=128, num_classes=5
    )
    data = medmnist_dataset(root=str(path), split="val")
    assert data.flag == "retinamnist" and data.image_size == (128, 128)
    assert data.classes == ["0", "1", "2", "3", "4"]
    assert parse_file_name(path) == ("retinamnist", 128)
    assert parse_file_name(tmp_path / "pathmnist.npz") == ("pathmnist", None)
    assert parse_file_name("cohort_2023.npz") == ("cohort_2023", None)  # 2023 is no MedMNIST size


def test_an_unknown_flag_numbers_its_classes_alike_in_every_split(tmp_path, write_npz):
    arrays = {}
    for split, top in (("train", 2), ("val", 1), ("test", 4)):
        arrays[f"{split}_images"] = np.zeros((5, 16, 16), np.uint8)
        arrays[f"{split}_labels"] = np.minimum(np.arange(5), top).reshape(-1, 1)
    path, _ = write_npz(tmp_path / "mysetmnist.npz", arrays)

    for split in ("train", "val", "test"):
        data = MedMNIST(path, split)
        assert data.classes == ["0", "1", "2", "3", "4"]
        assert data.ids[0] == f"mysetmnist_{split}_00000"
        assert data[0][0].shape == (3, 16, 16)


def test_a_single_channel_axis_is_read_as_grey(tmp_path, write_npz):
    arrays = {
        f"{split}_{kind}": value
        for split in ("train", "val", "test")
        for kind, value in (
            ("images", np.full((4, 28, 28, 1), 9, np.uint8)),
            ("labels", np.array([[0], [1], [0], [1]], np.int64)),
        )
    }
    write_npz(tmp_path / "breastmnist.npz", arrays)
    data = medmnist_dataset(root=tmp_path, split="train", flag="breastmnist")
    image, label = data[1]
    assert image.shape == (3, 28, 28) and int(image.min()) == int(image.max()) == 9
    assert label == 1 and data.classes[label] == "normal, benign"


def test_index_out_of_range_raises_index_error(tmp_path, write_npz):
    write_npz(tmp_path / "pathmnist.npz", rgb=True, num_classes=9)
    data = medmnist_dataset(root=tmp_path, split="val", flag="pathmnist")
    assert torch.equal(data[-1][0], data[len(data) - 1][0])
    with pytest.raises(IndexError):
        data[len(data)]


def test_default_root_follows_synergic_data_dir(tmp_path, monkeypatch, write_npz):
    monkeypatch.setenv("SYNERGIC_DATA_DIR", str(tmp_path))
    assert default_root() == tmp_path / "medmnist"
    write_npz(tmp_path / "medmnist" / "tissuemnist.npz", num_classes=8)
    assert len(medmnist_dataset(split="test", flag="tissuemnist")) == 8


def test_official_file_names_and_urls():
    assert file_name("dermamnist", 28) == "dermamnist.npz"
    assert file_name("dermamnist", 224) == "dermamnist_224.npz"
    assert official_url("pathmnist", 64) == (
        "https://zenodo.org/records/10519652/files/pathmnist_64.npz?download=1"
    )
    assert all(len(FLAGS[flag].md5) == 4 for flag in FLAGS)
    assert len(FLAGS) == 11


# Errors -----------------------------------------------------------------------------------------


def test_missing_file_without_download_says_how_to_get_it(tmp_path):
    with pytest.raises(SynergicError) as error:
        medmnist_dataset(root=tmp_path, split="train", flag="dermamnist", size=224)
    message = _one_line(error)
    assert str(tmp_path / "dermamnist_224.npz") in message
    assert "set data.options.download: true" in message
    assert official_url("dermamnist", 224) in message


def test_unknown_flag_without_a_file_suggests_the_closest(tmp_path):
    with pytest.raises(SynergicError) as error:
        medmnist_dataset(root=tmp_path, split="train", flag="dermamnst", download=True)
    assert "did you mean 'dermamnist'?" in _one_line(error)


@pytest.mark.parametrize("flag", ["chestmnist", "organmnist3d"])
def test_multi_label_and_3d_sets_are_refused_by_name(tmp_path, flag):
    with pytest.raises(SynergicError) as error:
        medmnist_dataset(root=tmp_path, split="train", flag=flag, download=True)
    message = _one_line(error)
    assert flag in message and ("multi-label" in message or "3-D" in message)
    assert not any(tmp_path.iterdir())  # nothing was downloaded


def test_multi_label_arrays_are_refused(tmp_path, write_npz):
    arrays = make_valid(4)
    arrays["train_labels"] = np.zeros((4, 14), np.uint8)
    path, _ = write_npz(tmp_path / "mychest.npz", arrays)
    with pytest.raises(SynergicError) as error:
        MedMNIST(path, "train")
    message = _one_line(error)
    assert "'train_labels'" in message and "multi-label" in message and str(path) in message


def test_volumes_are_refused(tmp_path, write_npz):
    arrays = make_valid(4)
    arrays["val_images"] = np.zeros((4, 28, 28, 28), np.uint8)
    path, _ = write_npz(tmp_path / "myvolumes.npz", arrays)
    with pytest.raises(SynergicError, match=r"'val_images' has shape \[4, 28, 28, 28\]"):
        MedMNIST(path, "val")


def test_missing_key_is_named(tmp_path, write_npz):
    arrays = make_valid(4)
    del arrays["val_images"]
    path, _ = write_npz(tmp_path / "pathmnist.npz", arrays)
    assert len(MedMNIST(path, "train")) == 4  # the other splits still load
    with pytest.raises(SynergicError) as error:
        MedMNIST(path, "val")
    message = _one_line(error)
    assert "no array 'val_images'" in message and str(path) in message


def test_image_label_count_mismatch_is_named(tmp_path, write_npz):
    arrays = make_valid(4)
    arrays["test_labels"] = np.zeros((3, 1), np.uint8)
    path, _ = write_npz(tmp_path / "pathmnist.npz", arrays)
    with pytest.raises(SynergicError) as error:
        MedMNIST(path, "test")
    message = _one_line(error)
    assert "'test_images' has 4 images but 'test_labels' has 3 labels" in message


def test_truncated_file_is_reported_with_its_path(tmp_path, write_npz):
    path, _ = write_npz(tmp_path / "dermamnist.npz", rgb=True, num_classes=7)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SynergicError) as error:
        medmnist_dataset(root=tmp_path, split="train", flag="dermamnist")
    message = _one_line(error)
    assert str(path) in message and "fetch it again" in message


@pytest.mark.parametrize("mmap", [False, True])
def test_damaged_member_is_reported_with_its_key(tmp_path, write_npz, mmap):
    path, arrays = write_npz(tmp_path / "pathmnist.npz", make_valid(50), compressed=False)
    raw = bytearray(path.read_bytes())
    pixels = arrays["train_images"].tobytes()
    start = raw.find(pixels)
    assert start > 0
    raw[start + 100] ^= 0xFF  # the zip's CRC no longer matches
    path.write_bytes(bytes(raw))
    with pytest.raises(SynergicError) as error:
        MedMNIST(path, "train", mmap=mmap)
    message = _one_line(error)
    assert "'train_images'" in message and str(path) in message
    assert not list(tmp_path.glob("**/*.part"))


def test_not_a_zip_archive(tmp_path):
    path = tmp_path / "dermamnist.npz"
    path.write_text("<html>rate limited</html>")
    with pytest.raises(SynergicError, match="is not a .npz"):
        medmnist_dataset(root=tmp_path, split="train", flag="dermamnist")


def test_labels_beyond_the_known_classes_are_refused(tmp_path, write_npz):
    arrays = make_valid(4)
    arrays["train_labels"][2] = 5
    write_npz(tmp_path / "pneumoniamnist.npz", arrays)
    with pytest.raises(SynergicError, match="label 5 but pneumoniamnist has 2 classes"):
        medmnist_dataset(root=tmp_path, split="train", flag="pneumoniamnist")


def test_image_size_must_match_the_file_name(tmp_path, write_npz):
    write_npz(tmp_path / "dermamnist.npz", rgb=True, size=64, num_classes=7)
    with pytest.raises(SynergicError, match="holds 64x64 images, but"):
        medmnist_dataset(root=tmp_path, split="train", flag="dermamnist")


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"size": 32}, "size must be one of 28, 64, 128, 224"),
        ({"size": "big"}, "size must be one of"),
        ({"flg": "dermamnist"}, "unknown data.options key 'flg'.*did you mean 'flag'"),
        ({"download": "yes"}, "download must be true or false"),
        ({}, "needs data.options.flag"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, options, expected):
    with pytest.raises(SynergicError, match=expected):
        medmnist_dataset(root=tmp_path, split="train", **options)


def test_unknown_split(tmp_path, write_npz):
    path, _ = write_npz(tmp_path / "pathmnist.npz", rgb=True, num_classes=9)
    with pytest.raises(SynergicError, match="no split 'valid'.*did you mean 'val'"):
        MedMNIST(path, "valid")


def make_valid(count: int) -> dict[str, np.ndarray]:
    """Grey 28x28 arrays, ``count`` per split, labels 0 and 1."""
    return {
        f"{split}_{kind}": value
        for split in ("train", "val", "test")
        for kind, value in (
            (
                "images",
                np.arange(count * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(count, 28, 28),
            ),
            ("labels", (np.arange(count) % 2).reshape(-1, 1).astype(np.uint8)),
        )
    }


def test_a_memory_mapped_set_pickles_as_its_file_name(tmp_path, write_npz):
    write_npz(tmp_path / "organsmnist_64.npz", size=64, num_classes=11)
    mapped = medmnist_dataset(root=tmp_path, split="train", flag="organsmnist", size=64, mmap=True)
    payload = pickle.dumps(mapped)
    assert len(payload) < 20 * 64 * 64  # far less than the pixels themselves
    copy = pickle.loads(payload)
    assert isinstance(copy._images, np.memmap)
    assert copy.ids == mapped.ids and copy.labels == mapped.labels
    assert torch.equal(copy[5][0], mapped[5][0])
