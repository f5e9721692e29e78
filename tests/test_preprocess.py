"""One path from a file to a model input: synergic.data.preprocess, and `predict` == the run's eval.

The acceptance test trains briefly on the real ISIC 2016 sample (JPEGs of 512 x 384 up to
1022 x 767 in its test split, all larger than twice the image size, so reduced-scale decoding
applies) and checks that `synergic predict RUN <test images>` reproduces the run's
predictions.csv per image.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image
from tiny_recipe import TINY_RECIPE

from synergic.cli import cli
from synergic.data.cache import cache_key, decode_images, resolve_preprocessing
from synergic.data.datasets.base import FileImageDataset
from synergic.data.images import load_image, resize_image
from synergic.data.preprocess import PREPROCESSING_FORMAT, Preprocessing, normalize
from synergic.errors import SynergicError


def noise_jpeg(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    """A JPEG of smooth noise: like a photograph, its reduced-scale decode is not a full one."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=92)
    return path


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        header, *rows = list(csv.reader(handle))
    return header, rows


def train(recipe_text: str, out: Path) -> None:
    recipe = out.parent / f"{out.name}.yaml"
    recipe.write_text(recipe_text)
    result = CliRunner().invoke(cli, ["run", str(recipe), "--output", str(out)])
    assert result.exit_code == 0, result.output


# --- the Preprocessing value ------------------------------------------------------------------


def test_to_dict_round_trips_through_json():
    preprocessing = Preprocessing(96, "bilinear", decode_scale=None, mean=(0.5, 0.4, 0.3),
                                  std=[0.2, 0.25, 0.3])
    stored = json.loads(json.dumps(preprocessing.to_dict()))
    assert stored == {
        "format": PREPROCESSING_FORMAT, "image_size": 96, "resample": "bilinear",
        "decode_scale": None, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3],
    }
    assert Preprocessing.from_dict(stored) == preprocessing
    assert Preprocessing(224).decode_size == 448 and preprocessing.decode_size is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_size": 0}, "image_size must be a positive integer"),
        ({"image_size": True}, "image_size must be a positive integer"),
        ({"image_size": 32.0}, "image_size must be a positive integer"),
        ({"image_size": 32, "resample": "bicubik"}, "did you mean 'bicubic'"),
        ({"image_size": 32, "resample": ["bicubic"]}, "unknown resample method"),
        ({"image_size": 32, "decode_scale": 0}, "decode_scale must be a positive integer or None"),
        ({"image_size": 32, "decode_scale": 1.5}, "decode_scale"),
        ({"image_size": 32, "mean": (0.5, 0.5)}, r"mean must be 3 finite numbers \(R, G, B\)"),
        ({"image_size": 32, "mean": "abc"}, "mean must be 3 finite numbers"),
        ({"image_size": 32, "mean": (0.5, float("nan"), 0.5)}, "mean must be 3 finite"),
        ({"image_size": 32, "std": (0.5, 0.0, 0.5)}, r"std must be 3 finite numbers > 0"),
    ],
)
def test_invalid_settings_are_one_line_errors(options, message):
    with pytest.raises(SynergicError, match=message) as raised:
        Preprocessing(**options)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("mean"), "missing keys mean"),
        (lambda d: d.update(crop_pct=0.9), "unknown keys crop_pct"),
        (lambda d: d.update(format=PREPROCESSING_FORMAT + 1), "preprocessing format"),
        (lambda d: d.update(std=[1, 1]), r"ckpt\.pt: std must be 3 finite numbers"),
    ],
)
def test_a_damaged_record_names_its_source(change, message):
    stored = Preprocessing(32).to_dict()
    change(stored)
    with pytest.raises(SynergicError, match=message) as raised:
        Preprocessing.from_dict(stored, source="ckpt.pt")
    assert str(raised.value).startswith("ckpt.pt: ") and "\n" not in str(raised.value)


def test_load_decodes_large_jpegs_at_the_decode_scale(tmp_path):
    path = noise_jpeg(tmp_path / "large.jpg", (1000, 760))
    two, one, full = (Preprocessing(64, decode_scale=s) for s in (2, 1, None))
    image = two.load(path)
    assert image.dtype == torch.uint8 and image.shape == (3, 64, 64)

    def reference(min_size):
        pil = resize_image(load_image(path, min_size=min_size), 64, "bicubic")
        return torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)

    # 2 x 64: decoded at 1/4 (250 x 190); 1 x 64: at 1/8 (125 x 95); None: at full size.
    assert torch.equal(image, reference(128))
    assert torch.equal(one.load(path), reference(64))
    assert torch.equal(full.load(path), reference(None))
    assert not torch.equal(one.load(path), image)  # the decode scale changes pixels


def test_in_memory_images_are_resized_like_files(tmp_path):
    preprocessing = Preprocessing(16, "bilinear")
    pil = Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 30), dtype=np.uint8))
    resized = preprocessing.resize(pil)  # greyscale -> RGB
    assert resized.shape == (3, 16, 16) and torch.equal(resized[0], resized[2])
    assert torch.equal(preprocessing.resize(resized), resized)  # right size: unchanged
    with pytest.raises(SynergicError, match=r"item 3 is a str; expected a PIL image"):
        preprocessing.resize("x", what="item 3")
    with pytest.raises(SynergicError, match="lanczos"):
        Preprocessing(8, "lanczos").resize(torch.zeros(3, 10, 10, dtype=torch.uint8))


def test_normalize_takes_uint8_or_floats_and_checks_channels():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    mean, std = (0.0, 0.2, 0.5), (1.0, 0.5, 0.25)
    expected = torch.tensor([0.0, 0.0, 2.0]).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    torch.testing.assert_close(normalize(images, mean, std), expected)
    assert torch.equal(normalize(images, mean, std), normalize(images.float() / 255, mean, std))
    assert torch.equal(Preprocessing(2, mean=mean, std=std).normalize(images[0]),
                       normalize(images, mean, std)[0])
    on_device_shape = torch.tensor(mean).view(1, 3, 1, 1)  # how the Trainer keeps them
    assert torch.equal(normalize(images, on_device_shape, std), normalize(images, mean, std))
    assert normalize(images, mean, std).dtype == torch.float32
    with pytest.raises(SynergicError, match="one mean and std per channel"):
        normalize(images, (0.5, 0.5), (0.5, 0.5))
    with pytest.raises(SynergicError, match="uint8 or floating-point"):
        normalize(images.int(), mean, std)


def test_the_cache_key_follows_every_pixel_setting_and_not_mean_std(tmp_path):
    paths = [noise_jpeg(tmp_path / f"{i}.jpg", (80, 60), seed=i) for i in range(2)]
    data = FileImageDataset(["a", "b"], ["0", "1"], [0, 1], paths, name="noise")
    base = cache_key(data, preprocessing=Preprocessing(32))
    assert cache_key(data, image_size=32) == base  # the shorthand is the same preprocessing
    assert cache_key(data, preprocessing=Preprocessing(32, mean=(0, 0, 0), std=(1, 1, 1))) == base
    for changed in (Preprocessing(32, decode_scale=None), Preprocessing(32, decode_scale=1),
                    Preprocessing(32, "bilinear"), Preprocessing(33)):
        assert cache_key(data, preprocessing=changed) != base, changed


def test_training_decodes_files_exactly_as_load_does(tmp_path):
    paths = [noise_jpeg(tmp_path / f"{i}.jpg", (300 + 50 * i, 200), seed=i) for i in range(3)]
    data = FileImageDataset(["a", "b"], ["0", "1", "2"], [0, 1, 0], paths, name="noise")
    for preprocessing in (Preprocessing(40), Preprocessing(40, "nearest", decode_scale=None)):
        decoded = decode_images(data, preprocessing=preprocessing, num_workers=0)
        assert torch.equal(decoded, torch.stack([preprocessing.load(p) for p in paths]))


def test_preprocessing_or_its_shorthand_not_both():
    assert resolve_preprocessing(image_size=8, resample="nearest") == Preprocessing(8, "nearest")
    with pytest.raises(SynergicError, match="either preprocessing or image_size"):
        resolve_preprocessing(Preprocessing(8), image_size=8)
    with pytest.raises(SynergicError, match="at least image_size"):
        resolve_preprocessing()


# --- a run stores its preprocessing, and predict uses the stored one ---------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, one_torch_thread) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "run"
    train(TINY_RECIPE, out)
    return out


def test_the_run_records_its_preprocessing(tiny_run):
    from synergic.models.backbones import backbone_normalization, create_backbone
    from synergic.training.checkpoint import load_checkpoint

    stored = json.loads((tiny_run / "preprocessing.json").read_text())
    mean, std = backbone_normalization(create_backbone("test_efficientnet"))
    assert Preprocessing.from_dict(stored) == Preprocessing(32, "bicubic", mean=mean, std=std)
    for name in ("last.pt", "best.pt"):
        state = load_checkpoint(tiny_run / "checkpoints" / name)
        assert state["metadata"]["preprocessing"] == stored


def test_predict_uses_the_checkpoints_preprocessing(tiny_run, tmp_path, monkeypatch):
    import synergic.models.backbones as backbones
    from synergic import registry
    from synergic.serving import open_run, predict_images
    from synergic.training.checkpoint import load_checkpoint, save_checkpoint
    from synergic.training.evaluation import predict

    tiny_run = Path(shutil.copytree(tiny_run, tmp_path / "run"))  # its checkpoint is edited below
    images = [noise_jpeg(tmp_path / "images" / f"{i}.jpg", (90, 70), seed=i) for i in range(4)]
    _, default = predict_images(tiny_run, [tmp_path / "images"])

    def expected(preprocessing: Preprocessing) -> list[list[float]]:
        run = open_run(tiny_run)
        batch = torch.stack([preprocessing.load(p) for p in images])
        logits = predict(run.model, batch, mean=preprocessing.mean, std=preprocessing.std,
                         batch_size=run.recipe.train.eval_batch_size)
        return registry.aggregators.get(run.recipe.model.aggregator)(logits).tolist()

    last = tiny_run / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    stored = Preprocessing.from_dict(state["metadata"]["preprocessing"])
    assert [row for _, row in default] == expected(stored)

    # Another mean/std and size in the checkpoint: predict follows them, not the backbone's.
    changed = Preprocessing(24, "bilinear", mean=(0.1, 0.9, 0.3), std=(0.5, 0.4, 0.3))
    state["metadata"]["preprocessing"] = changed.to_dict()
    save_checkpoint(last, {k: v for k, v in state.items() if k != "format"})

    def rebuilt_model_must_not_be_asked(backbone):
        raise AssertionError("predict derived mean/std from the rebuilt model")

    monkeypatch.setattr(backbones, "backbone_normalization", rebuilt_model_must_not_be_asked)
    assert open_run(tiny_run).preprocessing == changed
    _, moved = predict_images(tiny_run, [tmp_path / "images"])
    assert [row for _, row in moved] == expected(changed)
    difference = max(abs(a - b) for (_, x), (_, y) in zip(moved, default) for a, b in zip(x, y))
    assert difference > 1e-4

    # A damaged record is one line naming the checkpoint.
    state["metadata"]["preprocessing"] = {"image_size": 32}
    save_checkpoint(last, {k: v for k, v in state.items() if k != "format"})
    with pytest.raises(SynergicError, match=r"last\.pt \(metadata\.preprocessing\): missing keys"):
        predict_images(tiny_run, [tmp_path / "images"])

    # A checkpoint of an older synergic (no record): the backbone's defaults, with a warning.
    monkeypatch.undo()
    del state["metadata"]["preprocessing"]
    save_checkpoint(last, {k: v for k, v in state.items() if k != "format"})
    with pytest.warns(UserWarning, match="does not record its preprocessing"):
        _, legacy = predict_images(tiny_run, [tmp_path / "images"])
    assert legacy == default


# --- acceptance: on the real ISIC sample, predict reproduces predictions.csv -------------------


def isic_recipe(root: Path) -> str:
    recipe = yaml.safe_load(TINY_RECIPE)
    recipe["name"] = "predict-is-eval"
    recipe["data"] = {
        "dataset": "isic2016", "root": str(root), "image_size": 64, "validation_fraction": 0,
        "cache": False,
    }
    recipe["train"].update(iterations=2, eval_every=0, checkpoint_every=0)
    return yaml.safe_dump(recipe, sort_keys=False)


@pytest.mark.shared_data
def test_predict_reproduces_the_runs_predictions_on_real_isic_jpegs(
    isic_sample, tmp_path, one_torch_thread
):
    from synergic.serving import evaluate_run, predict_images

    test_images = isic_sample / "ISBI2016_ISIC_Part3_Test_Data"
    sizes = {p.stem: Image.open(p).size for p in test_images.glob("*.jpg")}
    assert len(sizes) == 24 and min(min(s) for s in sizes.values()) > 2 * 64
    assert max(max(s) for s in sizes.values()) >= 1022  # full-size originals among them

    out = tmp_path / "run"
    train(isic_recipe(isic_sample), out)
    header, rows = read_csv(out / "predictions.csv")
    assert header == ["image", "benign", "malignant"] and len(rows) == 24
    expected = {row[0]: [float(v) for v in row[1:]] for row in rows}

    predictions = tmp_path / "predict.csv"
    result = CliRunner().invoke(
        cli, ["predict", str(out), str(test_images), "--output", str(predictions)]
    )
    assert result.exit_code == 0, result.output
    header, rows = read_csv(predictions)
    assert header[:3] == ["image", "benign", "malignant"]
    printed = {Path(row[0]).stem: [float(v) for v in row[1:3]] for row in rows}
    assert printed.keys() == expected.keys()
    for image_id, probabilities in expected.items():
        for ours, theirs in zip(printed[image_id], probabilities):
            assert abs(ours - theirs) <= 1e-6, (image_id, ours, theirs)

    # The library call, unrounded: the same inputs and batches give the same floats.
    _, library = predict_images(out, [test_images])
    for path, probabilities in library:
        for ours, theirs in zip(probabilities, expected[Path(path).stem]):
            assert abs(ours - theirs) <= 1e-6, (path, ours, theirs)

    # `synergic eval` decodes with the same stored preprocessing: the run's test metrics again.
    reported = json.loads((out / "metrics.json").read_text())["test"]
    again = evaluate_run(out)["aggregate"]
    for name, value in reported.items():
        if value is not None:
            assert math.isclose(again[name], value, rel_tol=0, abs_tol=1e-9), name
