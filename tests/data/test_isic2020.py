"""SIIM-ISIC 2020: the official layout, binary labels, patient and lesion groups, the duplicates,
the patient-hashed test split, and the download."""

from __future__ import annotations

import hashlib
import warnings

import pytest
from isic_layouts import ISIC2020_ROWS, make_isic2020, write_csv
from isic_layouts import assert_downloads_once, download_from, publishing

from synergic.data import NoSuchSplit
from synergic.data.datasets import isic2020 as isic
from synergic.errors import SynergicError

DROPPED = {"ISIC_0015719", "ISIC_0075914"}  # the second image of each default duplicate pair


def in_test(patient: str, percent: int = 20) -> bool:
    """The documented rule, written out: SHA-256 of the patient id, mod 100, below the percent."""
    return int(hashlib.sha256(patient.encode()).hexdigest(), 16) % 100 < percent


def expected(split: str, percent: int = 20, dropped=DROPPED) -> list[str]:
    return [image for image, (patient, _, _) in ISIC2020_ROWS.items()
            if image not in dropped and in_test(patient, percent) == (split == "test")]


@pytest.fixture
def root(tmp_path):
    return make_isic2020(tmp_path / "isic2020")


def load(root, split, **options):
    # The note on the dropped duplicates is given once per data folder (see the test below).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"ISIC 2020: dropped 2 duplicate images")
        return isic.isic2020(root, split=split, **options)


def test_the_dropped_duplicates_are_said_once_however_often_the_splits_are_opened(root):
    with pytest.warns(UserWarning) as caught:
        for split in ("train", "test", "train"):  # as `synergic cv -k 2` opens them
            isic.isic2020(root, split=split)
    assert [str(w.message) for w in caught] == [
        "ISIC 2020: dropped 2 duplicate images (the second of each pair in "
        "ISIC_2020_Training_Duplicates.csv; data.options.drop_duplicates: false keeps them)"
    ]


def test_binary_labels_and_the_patient_hashed_test_split(root):
    train, test = load(root, "train"), load(root, "test")
    assert train.classes == test.classes == ["benign", "malignant"]
    assert train.ids == expected("train") and test.ids == expected("test")
    assert test.ids == ["ISIC_0075663", "ISIC_0076262", "ISIC_0076995", "ISIC_0077472"]
    for dataset in (train, test):
        names = [ISIC2020_ROWS[image][2] for image in dataset.ids]
        assert [dataset.classes[k] for k in dataset.labels] == names
        assert dataset.primary_metric == "auc"
    assert set(train.groups["patient"]).isdisjoint(test.groups["patient"])
    assert train.paths[0] == root / "train" / "ISIC_2637011.jpg"


def test_groups_patient_and_lesion_a_blank_lesion_is_its_own(root):
    train = load(root, "train")
    assert list(train.groups) == ["patient", "lesion"]
    for image, patient, lesion in zip(train.ids, *train.groups.values()):
        assert patient == ISIC2020_ROWS[image][0]
        assert lesion == (ISIC2020_ROWS[image][1] or image)
    assert dict(zip(train.ids, train.groups["lesion"]))["ISIC_0074542"] == "ISIC_0074542"


def test_the_split_does_not_depend_on_the_order_of_the_csv(tmp_path):
    shuffled = dict(reversed(list(ISIC2020_ROWS.items())))
    root = make_isic2020(tmp_path / "reversed", shuffled)
    test = load(root, "test")
    assert sorted(test.ids) == sorted(expected("test"))


@pytest.mark.parametrize("percent", [8, 50, 62])  # the hashes: 7, 9, 29, 39, 60, 63
def test_test_percent_moves_whole_patients(root, percent):
    train = load(root, "train", test_percent=percent)
    test = load(root, "test", test_percent=percent)
    assert sorted(train.ids + test.ids) == sorted(set(ISIC2020_ROWS) - DROPPED)
    assert set(train.groups["patient"]).isdisjoint(test.groups["patient"])
    assert test.ids == expected("test", percent)


def test_an_empty_split_says_what_to_do(root):
    # No default patient hashes below 1 (IP_7288856 is at 7, IP_7284412 at 9).
    with pytest.raises(SynergicError, match="the test split of .* is empty with test_percent=1"):
        load(root, "test", test_percent=1)


@pytest.mark.parametrize("percent", [0, 100, 20.5, True, "20"])
def test_test_percent_must_be_an_integer_from_1_to_99(root, percent):
    with pytest.raises(SynergicError, match="data.options.test_percent: isic2020 takes an integer"):
        isic.isic2020(root, split="train", test_percent=percent)


def test_duplicates_kept_on_request_and_required_otherwise(tmp_path, root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing dropped, nothing said
        kept = isic.isic2020(root, split="test", drop_duplicates=False)
    assert kept.ids == expected("test", dropped=set())
    bare = make_isic2020(tmp_path / "bare", duplicates=[])
    with pytest.raises(SynergicError) as error:
        isic.isic2020(bare, split="train")
    assert str(error.value) == (
        f"ISIC 2020: no ISIC_2020_Training_Duplicates.csv in {bare}, so the duplicate images "
        "cannot be dropped: run 'synergic data download isic2020', or set "
        "data.options.drop_duplicates: false to keep them"
    )


def test_the_duplicates_list_is_read_by_its_header_and_a_wrong_one_is_refused(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["image_name_2,image_name_1", "ISIC_2,ISIC_1",
                                          "ISIC_3,ISIC_1", "ISIC_4", " ,ISIC_5"], bom=True)
    # By column name, not position; a row without a second image names none.
    assert isic.read_duplicates(path) == {"ISIC_2", "ISIC_3", "ISIC_4"}
    write_csv(path, ["image_name,target", "ISIC_1,0"])
    with pytest.raises(SynergicError) as error:
        isic.read_duplicates(path)
    assert str(error.value) == (
        f"{path}: expected a header with the columns image_name_1,image_name_2, got "
        "'image_name,target'; re-download it"
    )


def test_the_first_ground_truth_has_patients_only(tmp_path):
    root = make_isic2020(tmp_path / "v1", version=1)
    train = load(root, "train")
    assert list(train.groups) == ["patient"]
    assert train.source == root / "ISIC_2020_Training_GroundTruth.csv"
    assert train.ids == expected("train")


def test_the_second_ground_truth_is_preferred(tmp_path):
    root = make_isic2020(tmp_path / "both", version=1)
    make_isic2020(root)
    assert load(root, "train").source == root / "ISIC_2020_Training_GroundTruth_v2.csv"


def test_there_is_no_validation_split(root):
    with pytest.raises(NoSuchSplit):
        isic.isic2020(root, split="val")


def test_a_target_that_is_not_binary_names_file_and_line(root):
    csv_path = root / "ISIC_2020_Training_GroundTruth_v2.csv"
    lines = csv_path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",2"
    write_csv(csv_path, lines, crlf=False)
    with pytest.raises(SynergicError, match=f"{csv_path} line 4: target is '2', expected 0.0"):
        isic.isic2020(root, split="train")


def test_a_carved_validation_split_keeps_each_patient_on_one_side(root):
    import yaml

    from synergic.experiment import carve_validation, validation_group_kind
    from synergic.recipe import Recipe

    recipe = Recipe.model_validate(yaml.safe_load(
        "{name: t, data: {dataset: isic2020, validation_fraction: 0.25}}"
    ))
    train = load(root, "train")
    assert validation_group_kind(recipe, train) == "patient"
    keep, held_out = carve_validation(recipe, train, has_validation=False)
    patients = train.groups["patient"]
    assert {patients[i] for i in keep}.isdisjoint(patients[i] for i in held_out)
    assert {train.labels[i] for i in held_out} == {train.labels[i] for i in keep} == {0, 1}


# -------------------------------------------------------------------------------------- download


@pytest.fixture
def server(tmp_path, monkeypatch):
    # The images are published as ISIC_2020_Training_JPEG.zip, which unpacks to train/.
    with publishing(make_isic2020(tmp_path / "published"), "2020", monkeypatch,
                    renamed={"train.zip": "ISIC_2020_Training_JPEG.zip"}) as fake:
        yield fake


def test_download_fetches_the_official_files_once(server, tmp_path):
    root = assert_downloads_once(isic, server, tmp_path / "isic2020")
    assert load(root, "test").ids == expected("test")
    assert (root / ".train.complete").is_file()


def test_download_true_in_the_factory_downloads_when_missing(server, tmp_path, monkeypatch):
    download_from(server, isic, monkeypatch)
    assert load(tmp_path / "fresh", "train", download=True).ids == expected("train")
    assert len(server.requests) == len(isic.DOWNLOAD_FILES)
