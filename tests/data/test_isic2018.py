"""ISIC 2018 Task 3 (HAM10000): the official layout, one-hot labels, lesion groups, download, and
a run end to end on real images."""

from __future__ import annotations

import json
import warnings

import pytest
from isic_layouts import ISIC2018_CLASSES, ISIC2018_LESIONS, ISIC2018_ROWS, isic2018_names
from isic_layouts import assert_downloads_once, make_isic2018, publishing, write_csv

from synergic.data.datasets import isic2018 as isic
from synergic.errors import SynergicError


@pytest.fixture
def root(tmp_path):
    return make_isic2018(tmp_path / "isic2018")


def truth_csv(root, split):
    folder = isic2018_names(split)[1]
    return root / folder / f"{folder}.csv"


def test_seven_classes_in_the_csv_column_order(root):
    train = isic.isic2018(root, split="train")
    assert train.classes == list(ISIC2018_CLASSES) == list(isic.CLASSES)
    assert train.ids == list(ISIC2018_ROWS["train"])
    assert [train.classes[label] for label in train.labels] == list(ISIC2018_ROWS["train"].values())
    assert train.primary_metric == "balanced_accuracy"
    assert len(train) == 8  # ATTRIBUTION.txt and LICENSE.txt beside the images are not images


def test_lesion_groups_and_an_image_without_a_lesion_is_its_own_group(root):
    train = isic.isic2018(root, split="train")
    expected = [ISIC2018_LESIONS.get(image_id, image_id) for image_id in train.ids]
    assert train.groups == {"lesion": expected}
    assert expected[:2] == ["HAM_0000118", "HAM_0000118"] and expected[-1] == "ISIC_0024313"
    for split in ("val", "test"):  # the groupings cover the training images only
        assert not hasattr(isic.isic2018(root, split=split), "groups")


def test_without_the_groupings_file_no_groups_and_one_warning(tmp_path):
    root = make_isic2018(tmp_path, groupings=False)
    with pytest.warns(UserWarning) as caught:
        train = isic.isic2018(root, split="train")
    assert not hasattr(train, "groups")
    assert len(caught) == 1
    assert str(caught[0].message).startswith(
        f"ISIC 2018: no ISIC2018_Task3_Training_LesionGroupings.csv in {root}, so the training "
        "images have no lesion groups"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        isic.isic2018(root, split="test")  # no warning for a split that never has groups


def test_the_groups_keep_lesions_on_one_side_of_a_cross_validation(tmp_path):
    from synergic.cv import split_fold
    from synergic.recipe.schema import CrossValidationConfig

    rows = {"train": {f"ISIC_{i:07d}": ("NV", "MEL")[i % 2] for i in range(24)}}
    lesions = {image_id: f"HAM_{i // 3}" for i, image_id in enumerate(rows["train"])}
    root = make_isic2018(tmp_path, rows, lesions=lesions)
    train = isic.isic2018(root, split="train")
    for fold in range(3):
        fit, held_out = split_fold(
            train, CrossValidationConfig(folds=3, fold=fold, group_by="lesion"), name="isic2018"
        )
        fit_lesions = {lesions[train.ids[i]] for i in fit.indices}
        held_lesions = {lesions[train.ids[i]] for i in held_out.indices}
        assert fit_lesions and held_lesions and not fit_lesions & held_lesions


def test_the_official_validation_split_is_used(root):
    from synergic.experiment import open_datasets
    from synergic.recipe import Recipe

    recipe = Recipe(name="t", data={"dataset": "isic2018", "root": str(root), "image_size": 16,
                                    "validation_fraction": 0.5, "cache": False})
    _, validation, test = open_datasets(recipe)
    assert validation.ids == list(ISIC2018_ROWS["val"])
    assert test.ids == list(ISIC2018_ROWS["test"])


def test_a_ground_truth_csv_directly_in_the_root_is_read(root):
    folder = root / isic2018_names("test")[1]
    truth_csv(root, "test").rename(root / f"{folder.name}.csv")
    assert isic.isic2018(root, split="test").ids == list(ISIC2018_ROWS["test"])


def test_an_image_no_row_names_is_ignored(root):
    write_jpeg_copy = root / isic2018_names("val")[0] / "ISIC_9999999.jpg"
    write_jpeg_copy.write_bytes((root / isic2018_names("val")[0] / "ISIC_0034321.jpg").read_bytes())
    assert len(isic.isic2018(root, split="val")) == 3


@pytest.mark.parametrize(("cells", "expected"), [
    ("0.0,0.0,0.0,0.0,0.0,0.0,0.0", "ISIC_0034322 is labelled no class"),
    ("1.0,1.0,0.0,0.0,0.0,0.0,0.0", "ISIC_0034322 is labelled MEL and NV"),
])
def test_a_row_that_is_not_one_hot_names_the_file_and_row(root, cells, expected):
    csv_path = write_csv(truth_csv(root, "val"), [
        "image," + ",".join(ISIC2018_CLASSES), "ISIC_0034321,0.0,1.0,0.0,0.0,0.0,0.0,0.0",
        f"ISIC_0034322,{cells}",
    ])
    with pytest.raises(SynergicError) as caught:
        isic.isic2018(root, split="val")
    assert str(caught.value) == (
        f"{csv_path} line 3: {expected}; each row needs exactly one 1.0 among "
        "MEL,NV,BCC,AKIEC,BKL,DF,VASC; fix the file or re-download it"
    )


def test_a_missing_image_and_images_one_folder_too_deep(root):
    folder = root / isic2018_names("test")[0]
    (folder / "ISIC_0034526.jpg").unlink()
    with pytest.raises(SynergicError, match=r"image .*ISIC_0034526\.jpg is missing \(listed in "
                                            r".*Test_GroundTruth\.csv\); run 'synergic data "
                                            r"download isic2018' or set data.root$"):
        isic.isic2018(root, split="test")
    nested = folder / folder.name
    nested.mkdir()
    for image in folder.glob("*.jpg"):
        image.rename(nested / image.name)
    with pytest.raises(SynergicError, match=rf"one folder too deep, into {nested}; move them up"):
        isic.isic2018(root, split="test")


def test_files_unpacked_one_folder_down_are_pointed_at(tmp_path, monkeypatch):
    inner = make_isic2018(tmp_path / "downloads" / "ISIC2018")
    monkeypatch.setattr(isic, "download", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(SynergicError) as caught:
        isic.isic2018(tmp_path / "downloads", split="train", download=True)
    assert str(caught.value) == (
        f"ISIC 2018 not found at {tmp_path / 'downloads'}; the official files are in {inner}: "
        f"set data.root to {inner}"
    )


# -------------------------------------------------------------------------------------- download


@pytest.fixture
def server(tmp_path, monkeypatch):
    with publishing(make_isic2018(tmp_path / "published"), "2018", monkeypatch) as fake:
        yield fake


def test_download_is_complete_idempotent_and_loads_with_groups(server, tmp_path):
    root = assert_downloads_once(isic, server, tmp_path / "isic2018")
    train = isic.isic2018(root, split="train")
    assert train.groups["lesion"][0] == "HAM_0000118"
    assert isic.isic2018(root, split="test").ids == list(ISIC2018_ROWS["test"])


def test_a_truncated_archive_is_an_error_and_fetched_again(server, tmp_path):
    # Not tmp_path itself: the server's files lie in tmp_path/published, a complete copy
    # that a download into tmp_path would point at instead of fetching.
    root = tmp_path / "isic2018"
    zip_name = f"{isic2018_names('val')[0]}.zip"
    body = server.files[zip_name]
    server.files[zip_name] = body[: len(body) // 2]  # the server itself has a cut file
    with pytest.raises(SynergicError) as caught:
        isic.download(root, base_url=server.url, progress=False)
    assert str(caught.value).startswith(f"downloaded {root / zip_name} is not a valid zip "
                                        "archive (")
    assert str(caught.value).endswith("it was deleted: run the download again")
    assert not (root / zip_name).exists()
    assert not (root / isic2018_names("val")[0]).exists()
    server.files[zip_name] = body
    isic.download(root, base_url=server.url, progress=False)
    assert len(isic.isic2018(root, split="val")) == 3


def test_an_archive_short_of_images_is_reported(server, tmp_path):
    import io
    import zipfile

    # Not tmp_path itself: the server's files lie in tmp_path/published, a complete copy
    # that a download into tmp_path would point at instead of fetching.
    root = tmp_path / "isic2018"
    zip_name = f"{isic2018_names('test')[0]}.zip"
    source = zipfile.ZipFile(io.BytesIO(server.files[zip_name]))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member in source.namelist():
            if not member.endswith("ISIC_0034527.jpg"):
                archive.writestr(member, source.read(member))
    server.files[zip_name] = buffer.getvalue()
    with pytest.raises(SynergicError, match=r"downloaded ISIC 2018 test data is incomplete: 3 "
                                            r"images in .* for 4 rows in .*, e\.g\. no .*"
                                            r"ISIC_0034527\.jpg; delete .* and run 'synergic data "
                                            r"download isic2018' again"):
        isic.download(root, base_url=server.url, progress=False)


def test_the_cli_downloads_through_the_table(server, tmp_path):
    from click.testing import CliRunner

    from synergic.cli import cli
    from synergic.cli.data import DOWNLOADERS

    # Not tmp_path itself: the server's files lie in tmp_path/published, a complete copy
    # that a download into tmp_path would point at instead of fetching.
    root = tmp_path / "isic2018"
    assert list(DOWNLOADERS) == ["isic2016", "isic2017", "isic2018", "isic2019", "isic2020"]
    result = CliRunner().invoke(cli, ["data", "download", "isic2018", "--root", str(root),
                                      "--base-url", server.url])
    assert result.exit_code == 0, result.output
    assert f"isic2018 is ready in {root}" in result.output
    assert len(isic.isic2018(root, split="train")) == 8


# ----------------------------------------------------------------------------------- end to end


def test_real_images_in_the_isic2018_layout_train_and_evaluate(isic_sample, tmp_path):
    """The ISIC 2018 layout built from real ISIC 2016 images (malignant as MEL, benign images as
    the six other classes), trained for a few iterations with a tiny model and evaluated."""
    from synergic.data.datasets import isic2016
    from synergic.experiment import run
    from synergic.recipe import load_recipe

    def images(split):
        dataset = isic2016.isic2016(isic_sample, split=split)
        benign = [p for p, label in zip(dataset.paths, dataset.labels) if label == 0]
        malignant = [p for p, label in zip(dataset.paths, dataset.labels) if label == 1]
        return benign, malignant

    benign, malignant = images("train")
    test_benign, test_malignant = images("test")
    others = [code for code in ISIC2018_CLASSES if code != "MEL"]
    real, rows, number = {}, {"train": {}, "val": {}, "test": {}}, 0
    for split, per_class, pool_benign, pool_malignant in (
        ("train", 3, benign[:18], malignant[:3]), ("val", 1, benign[18:24], malignant[3:4]),
        ("test", 2, test_benign[:12], test_malignant[:2]),
    ):
        for code in ISIC2018_CLASSES:
            pool = pool_malignant if code == "MEL" else pool_benign[
                others.index(code) * per_class:(others.index(code) + 1) * per_class]
            for path in pool:
                image_id = f"ISIC_{number:07d}"
                number += 1
                rows[split][image_id] = code
                real[image_id] = path
    root = make_isic2018(tmp_path / "isic2018", rows)
    for split, split_rows in rows.items():  # the real image behind each fabricated id
        for image_id in split_rows:
            target = root / isic2018_names(split)[0] / f"{image_id}.jpg"
            target.write_bytes(real[image_id].read_bytes())

    recipe = load_recipe("isic2018_sdl2", [
        f"data.root={root}", "data.image_size=32", "data.cache=false",
        "model.backbone.name=test_efficientnet", "model.backbone.pretrained=false",
        "model.head.hidden=16", "train.iterations=4", "train.batch_size=4", "train.device=cpu",
        "train.eval_every=2", "train.checkpoint_every=2", "train.eval_batch_size=16",
        "train.n_bootstrap=10", "train.num_workers=0",
    ])
    out = tmp_path / "run"
    run(recipe, out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["balanced_accuracy"] <= 1.0
    predictions = (out / "predictions.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in predictions[1:]] == list(rows["test"])
    assert (out / "checkpoints" / "best.pt").is_file()  # chosen on the official validation split
