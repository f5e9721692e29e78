"""ISIC 2019: the official layout, its eight classes, UNK, lesion groups, the test ground truth,
and its download."""

from __future__ import annotations

import pytest
from isic_layouts import ISIC2019_LESIONS, ISIC2019_ROWS, make_isic2019, write_csv
from isic_layouts import assert_downloads_once, publishing

from synergic.data import NoSuchSplit
from synergic.data.datasets import isic2019 as isic
from synergic.errors import SynergicError


@pytest.fixture
def root(tmp_path):
    return make_isic2019(tmp_path / "isic2019")


def test_eight_classes_from_the_one_hot_columns(root):
    train = isic.isic2019(root, split="train")
    assert train.classes == ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
    assert train.ids == list(ISIC2019_ROWS["train"])  # _downsampled names kept as written
    assert train.ids[0] == "ISIC_0000000_downsampled"
    assert train.paths[0] == root / "ISIC_2019_Training_Input" / "ISIC_0000000_downsampled.jpg"
    assert [train.classes[k] for k in train.labels] == list(ISIC2019_ROWS["train"].values())
    assert train.primary_metric == "balanced_accuracy"
    assert train[4][0].size == (16, 16)


def test_lesion_groups_from_the_metadata_a_blank_id_is_its_own_group(root):
    train = isic.isic2019(root, split="train")
    lesion = dict(zip(train.ids, train.groups["lesion"]))
    assert list(train.groups) == ["lesion"]
    for image_id in train.ids:
        assert lesion[image_id] == ISIC2019_LESIONS.get(image_id, image_id)
    assert lesion["ISIC_0000001"] == lesion["ISIC_0024500"] == "MSK4_0011169"
    assert len(set(train.groups["lesion"])) == len(train) - 2


def test_without_metadata_no_groups_and_one_warning(tmp_path):
    root = make_isic2019(tmp_path / "isic2019", metadata=False)
    with pytest.warns(UserWarning, match="no ISIC_2019_Training_Metadata.csv in .*no lesion"):
        train = isic.isic2019(root, split="train")
    assert not hasattr(train, "groups")


def test_test_split_leaves_unk_out_with_one_warning_and_ignores_score_weight(root):
    with pytest.warns(UserWarning) as warned:
        test = isic.isic2019(root, split="test")
    messages = [str(w.message) for w in warned]
    assert len(messages) == 1
    assert messages[0].startswith("ISIC 2019: left 2 test images labelled UNK out of the test")
    assert test.ids == ["ISIC_0034321", "ISIC_0034322", "ISIC_0034324", "ISIC_0034326"]
    assert [test.classes[k] for k in test.labels] == ["NV", "MEL", "SCC", "BCC"]
    assert test.primary_metric == "balanced_accuracy"
    assert not hasattr(test, "groups")


def test_a_training_row_labelled_unk_is_an_error_naming_file_and_row(tmp_path):
    rows = {"train": {**ISIC2019_ROWS["train"], "ISIC_0099999": "UNK"}}
    root = make_isic2019(tmp_path / "isic2019", rows)
    with pytest.raises(SynergicError) as error:
        isic.isic2019(root, split="train")
    message = str(error.value)
    assert message.startswith(
        f"{root / 'ISIC_2019_Training_GroundTruth.csv'} line 14: ISIC_0099999 is labelled UNK, "
        "which has no training images in ISIC 2019"
    )
    assert "\n" not in message


def test_there_is_no_validation_split(root):
    with pytest.raises(NoSuchSplit):
        isic.isic2019(root, split="val")


def test_without_the_test_ground_truth_the_error_says_how_to_get_it(tmp_path):
    root = make_isic2019(tmp_path / "isic2019", test_ground_truth=False)
    with pytest.raises(SynergicError) as error:
        isic.isic2019(root, split="test")
    assert str(error.value) == (
        f"ISIC 2019 test ground truth ISIC_2019_Test_GroundTruth.csv is not in {root}: the ISIC "
        "archive published it after the challenge at "
        "https://isic-challenge-data.s3.amazonaws.com/2019/ISIC_2019_Test_GroundTruth.csv; run "
        "'synergic data download isic2019' (it fetches only what is missing) or put the file "
        "there; 'synergic cv' needs no test split"
    )
    assert len(isic.isic2019(root, split="train")) == 12  # training needs no test labels


@pytest.mark.parametrize(
    ("line", "words"),
    [("ISIC_0000001,1.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0", "labelled MEL and NV"),
     ("ISIC_0000001,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0", "labelled no class"),
     ("ISIC_0000001,0.0,0.5,0.0,0.0,0.0,0.0,0.0,0.0,0.0", "NV is '0.5', expected 0.0 or 1.0")],
)
def test_rows_that_are_not_one_hot(tmp_path, line, words):
    root = make_isic2019(tmp_path / "isic2019", {"train": {"ISIC_0000001": "NV"}})
    csv_path = root / "ISIC_2019_Training_GroundTruth.csv"
    write_csv(csv_path, ["image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK", line])
    with pytest.raises(SynergicError, match=f"{csv_path} line 2: .*{words}"):
        isic.isic2019(root, split="train")


def test_a_missing_image_names_it(root):
    (root / "ISIC_2019_Training_Input" / "ISIC_0024331.jpg").unlink()
    with pytest.raises(SynergicError, match=r"ISIC 2019 image .*ISIC_0024331\.jpg is missing "
                       r"\(listed in .*ISIC_2019_Training_GroundTruth\.csv\)"):
        isic.isic2019(root, split="train")


def test_files_unpacked_one_folder_down_are_pointed_at(root, tmp_path):
    with pytest.raises(SynergicError, match=f"the official files are in {root}: set data.root"):
        isic.isic2019(tmp_path, split="train")


def test_a_carved_validation_split_keeps_each_lesion_on_one_side(root):
    import yaml

    from synergic.experiment import carve_validation
    from synergic.recipe import Recipe

    recipe = Recipe.model_validate(yaml.safe_load(
        "{name: t, data: {dataset: isic2019, validation_fraction: 0.3, "
        "allow_incomplete_validation: true}}"
    ))
    train = isic.isic2019(root, split="train")
    with pytest.warns(UserWarning, match="single training image|single lesion group"):
        keep, held_out = carve_validation(recipe, train, has_validation=False)
    lesions = train.groups["lesion"]
    assert {lesions[i] for i in keep}.isdisjoint(lesions[i] for i in held_out)
    assert held_out


# -------------------------------------------------------------------------------------- download


@pytest.fixture
def server(tmp_path, monkeypatch):
    with publishing(make_isic2019(tmp_path / "published"), "2019", monkeypatch) as fake:
        yield fake


def test_download_fetches_the_official_files_once(server, tmp_path):
    root = assert_downloads_once(isic, server, tmp_path / "isic2019")
    assert isic.isic2019(root, split="train").ids == list(ISIC2019_ROWS["train"])
    with pytest.warns(UserWarning, match="left 2 test images"):
        assert len(isic.isic2019(root, split="test")) == 4


def test_damaged_metadata_is_deleted_and_fetched_again(server, tmp_path):
    root = tmp_path / "isic2019"
    published = server.files[isic.METADATA]
    server.files[isic.METADATA] = b"image,age_approx\r\nISIC_0000001,55.0\r\n"  # no lesion_id
    with pytest.raises(SynergicError) as caught:
        isic.download(root, base_url=server.url, progress=False)
    assert str(caught.value) == (
        f"downloaded ISIC 2019 metadata is damaged and was deleted: {root / isic.METADATA} "
        "line 1: expected a header with the columns image,lesion_id, got 'image,age_approx' "
        "(missing lesion_id); re-download it; run 'synergic data download isic2019' again"
    )
    assert not (root / isic.METADATA).exists()
    server.files[isic.METADATA] = published
    server.requests.clear()
    isic.download(root, base_url=server.url, progress=False)
    assert server.names_requested() == [isic.METADATA]
    assert "lesion" in isic.isic2019(root, split="train").groups


def test_download_later_fetches_only_the_test_ground_truth(server, tmp_path):
    root = tmp_path / "isic2019"
    isic.download(root, base_url=server.url, progress=False)
    (root / "ISIC_2019_Test_GroundTruth.csv").unlink()
    with pytest.raises(SynergicError, match="test ground truth"):
        isic.isic2019(root, split="test")
    server.requests.clear()
    isic.download(root, base_url=server.url, progress=False)
    assert server.names_requested() == ["ISIC_2019_Test_GroundTruth.csv"]
    with pytest.warns(UserWarning, match="UNK"):
        assert len(isic.isic2019(root, split="test")) == 4
