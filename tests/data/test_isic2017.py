"""ISIC 2017 Part 3: the official layout, its labels, its two tasks, and its download."""

from __future__ import annotations

import pytest
from isic_layouts import ISIC2017_FILES, ISIC2017_ROWS, make_isic2017, write_csv
from isic_layouts import assert_downloads_once, download_from, publishing

from synergic.data.datasets import isic2017 as isic
from synergic.errors import SynergicError


@pytest.fixture
def root(tmp_path):
    return make_isic2017(tmp_path / "isic2017")


def test_three_classes_from_the_two_columns(root):
    train = isic.isic2017(root, split="train")
    assert train.classes == ["nevus", "melanoma", "seborrheic_keratosis"]
    assert train.ids == list(ISIC2017_ROWS["train"])
    assert [train.classes[label] for label in train.labels] == list(ISIC2017_ROWS["train"].values())
    assert train.primary_metric == "task_auc"
    assert train.task_classes == ("melanoma", "seborrheic_keratosis")
    assert not hasattr(train, "groups")  # ISIC 2017 publishes no lesion ids
    assert train[0][0].size == (16, 16)


def test_superpixels_and_metadata_beside_the_images_are_ignored(root):
    folder = root / ISIC2017_FILES["train"][0]
    assert len(list(folder.glob("*_superpixels.png"))) == 6
    assert (folder / "ISIC-2017_Training_Data_metadata.csv").is_file()
    assert len(isic.isic2017(root, split="train")) == 6


@pytest.mark.parametrize(("task", "positives"), [
    ("melanoma", ["ISIC_0012092"]),
    ("seborrheic_keratosis", ["ISIC_0012095"]),
])
def test_each_binary_task_is_its_class_against_the_rest(root, task, positives):
    test = isic.isic2017(root, split="test", task=task)
    assert test.classes == ["other", task]
    assert [i for i, label in zip(test.ids, test.labels) if label == 1] == positives
    assert test.primary_metric == "auc"
    assert not hasattr(test, "task_classes")


def test_the_official_validation_split_is_used_not_carved(root):
    from synergic.experiment import open_datasets, prepare_data
    from synergic.recipe import Recipe

    val = isic.isic2017(root, split="val")
    assert (val.ids, val.labels) == (list(ISIC2017_ROWS["val"]), [0, 1, 2])
    recipe = Recipe(name="t", data={"dataset": "isic2017", "root": str(root), "image_size": 16,
                                    "validation_fraction": 0.5, "cache": False})
    datasets = open_datasets(recipe)
    assert datasets[1].ids == list(ISIC2017_ROWS["val"])
    prepared = prepare_data(recipe, datasets=datasets)
    assert prepared.validation.ids == list(ISIC2017_ROWS["val"])
    assert prepared.train.ids == list(ISIC2017_ROWS["train"])  # nothing carved out of train


def test_a_row_with_both_classes_names_the_file_and_line(root):
    csv_path = root / ISIC2017_FILES["val"][1]
    write_csv(csv_path, ["image_id,melanoma,seborrheic_keratosis", "ISIC_0001769,0.0,0.0",
                         "ISIC_0001852,1.0,1.0"])
    with pytest.raises(SynergicError) as caught:
        isic.isic2017(root, split="val")
    assert str(caught.value) == (
        f"{csv_path} line 3: ISIC_0001852 is labelled both melanoma and seborrheic_keratosis; "
        "the classes exclude each other; fix the file or re-download it"
    )


@pytest.mark.parametrize(("lines", "expected"), [
    (["image_id,melanoma", "ISIC_1,0.0"],
     " line 1: expected a header with the columns image_id,melanoma,seborrheic_keratosis, got "
     "'image_id,melanoma' (missing seborrheic_keratosis); re-download it"),
    (["image_id,melanoma,seborrheic_keratosis", "ISIC_1,0.5,0.0"],
     " line 2: melanoma is '0.5', expected 0.0 or 1.0; fix the file or re-download it"),
    (["image_id,melanoma,seborrheic_keratosis", "ISIC_1,0.0"],
     " line 2: 2 cells for the 3 columns of the header (image_id,melanoma,seborrheic_keratosis)"
     "; fix the file or re-download it"),
    (["image_id,melanoma,seborrheic_keratosis", "ISIC_1,0.0,0.0", "ISIC_1,1.0,0.0"],
     ": image id ISIC_1 appears twice (lines 2 and 3); fix the file or re-download it"),
])
def test_malformed_ground_truth(root, lines, expected):
    csv_path = write_csv(root / ISIC2017_FILES["test"][1], lines)
    with pytest.raises(SynergicError) as caught:
        isic.isic2017(root, split="test")
    assert str(caught.value) == f"{csv_path}{expected}"


def test_a_row_whose_image_is_missing_is_an_error(root):
    image = root / ISIC2017_FILES["val"][0] / "ISIC_0001852.jpg"
    image.unlink()
    with pytest.raises(SynergicError) as caught:
        isic.isic2017(root, split="val")
    assert str(caught.value) == (
        f"ISIC 2017 image {image} is missing (listed in {root / ISIC2017_FILES['val'][1]}); "
        "run 'synergic data download isic2017' or set data.root"
    )


def test_an_unknown_task_suggests_the_closest():
    with pytest.raises(SynergicError, match=r"unknown task 'melanom' \(did you mean "
                                            r"'melanoma'\?\); valid tasks: all, melanoma, "
                                            r"seborrheic_keratosis"):
        isic.isic2017(None, split="train", task="melanom")


def test_files_one_folder_down_are_pointed_at(tmp_path):
    inner = make_isic2017(tmp_path / "outer" / "ISIC2017")
    with pytest.raises(SynergicError, match=rf"; the official files are in {inner}: set data.root"):
        isic.isic2017(tmp_path / "outer", split="test", download=True)


# -------------------------------------------------------------------------------------- download


@pytest.fixture
def server(tmp_path, monkeypatch):
    with publishing(make_isic2017(tmp_path / "published"), "2017", monkeypatch) as fake:
        yield fake


def test_download_fetches_the_official_files_once(server, tmp_path):
    root = assert_downloads_once(isic, server, tmp_path / "isic2017")
    for split, rows in ISIC2017_ROWS.items():
        assert isic.isic2017(root, split=split).ids == list(rows)


def test_a_truncated_archive_is_one_line_and_resumes(server, tmp_path):
    # Not tmp_path itself: the server's files lie in tmp_path/published, a complete copy
    # that a download into tmp_path would point at instead of fetching.
    root = tmp_path / "isic2017"
    zip_name = f"{ISIC2017_FILES['val'][0]}.zip"
    server.drop_after[zip_name] = 50
    with pytest.raises(SynergicError) as caught:
        isic.download(root, base_url=server.url, progress=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"could not download {server.url}{zip_name}: connection closed "
                              f"after 50 of {len(server.files[zip_name])} bytes; run again")
    server.drop_after.clear()
    server.requests.clear()
    isic.download(root, base_url=server.url, progress=False)
    assert (zip_name, "bytes=50-") in server.requests
    assert len(isic.isic2017(root, split="val")) == 3


def test_download_true_in_the_factory_downloads_when_missing(server, tmp_path, monkeypatch):
    download_from(server, isic, monkeypatch)
    assert isic.isic2017(tmp_path / "fresh", split="test", download=True).labels == [0, 1, 2, 0]
    assert len(server.requests) == len(isic.DOWNLOAD_FILES)
    server.requests.clear()
    assert len(isic.isic2017(tmp_path / "fresh", split="train", download=True)) == 6
    assert server.requests == []


def test_grouping_a_data_set_without_groups_says_to_drop_the_option(root):
    from synergic.cv import plan_cv

    with pytest.raises(SynergicError) as caught:
        plan_cv("isic2017_sdl2", folds=2, group_by="lesion", overrides=[f"data.root={root}"],
                output=root.parent / "cv")
    assert str(caught.value) == (
        "--group-by lesion: isic2017 has no groups (no lesion or patient ids): drop --group-by"
    )
