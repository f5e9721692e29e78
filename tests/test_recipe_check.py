"""`synergic recipe check` checks what `synergic run` checks before training (issue 14, item 6).

Each user error is one line and exit status 1, from `recipe check` and from `run` alike: both
call :func:`synergic.experiment.run` with ``check_only=True``. Nothing is decoded or downloaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from PIL import Image

from synergic.cli import main


def user_error(capsys, *args) -> str:
    """Run the installed command's ``main`` expecting a one-line user error; that line."""
    with pytest.raises(SystemExit) as caught:
        main([str(a) for a in args])
    assert caught.value.code == 1
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and stderr.strip().splitlines()[-1] == errors[0], stderr
    return errors[0].removeprefix("error: ")


def write_recipe(path: Path, data: dict, **model) -> Path:
    recipe = {
        "name": "checked",
        "data": {"image_size": 32, "cache": False, **data},
        "model": {"components": 2, "backbone": {"name": "test_efficientnet", "pretrained": False,
                                                 **model}, "head": {"hidden": 16}},
        "train": {"iterations": 2, "batch_size": 4, "device": "cpu"},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def write_folder(root: Path, counts: dict[str, int], splits=("train", "test")) -> Path:
    for split in splits:
        for name, count in counts.items():
            (root / split / name).mkdir(parents=True)
            for k in range(count):
                Image.new("RGB", (8, 8), (40 * k % 255, 90, 120)).save(
                    root / split / name / f"{name}_{k}.png"
                )
    return root


def test_the_demo_is_ok_and_the_check_prints_what_run_would_use(capsys):
    main(["recipe", "check", "demo"])
    captured = capsys.readouterr()
    assert captured.out.strip() == "demo: ok (demo)"
    assert "classes: 0=benign, 1=malignant" in captured.err
    assert "validation 60 (benign 42, malignant 18)" in captured.err


def test_a_misspelt_data_set_option_is_named_with_the_factory_s_options(capsys, tmp_path):
    message = user_error(capsys, "recipe", "check", "demo", "--set", "data.options.image_sise=32")
    assert message == (
        "data.options.image_sise: data set 'synthetic_lesions' has no option 'image_sise' (did "
        "you mean 'image_size'?); its options: num_train, num_val, num_test, image_size, seed, "
        "malignant_fraction"
    )
    # `run` stops with the same line, before the run directory is made.
    out = tmp_path / "run"
    assert user_error(capsys, "run", "demo", "--set", "data.options.image_sise=32",
                      "--output", out) == message
    assert not out.exists()


def test_required_and_framework_options_are_named(capsys, tmp_path):
    root = write_folder(tmp_path / "images", {"a": 2, "b": 2})
    recipe = write_recipe(tmp_path / "r.yaml", {"dataset": "csv", "root": str(root),
                                                 "options": {"train_csv": "train.csv"}})
    assert user_error(capsys, "recipe", "check", recipe).startswith(
        "data set 'csv' needs data.options.test_csv; its options: train_csv, test_csv, val_csv,"
    )
    message = user_error(capsys, "recipe", "check", recipe, "--set", f"data.options.root={root}")
    assert message == "data.options.root: synergic passes root itself: set data.root instead"
    message = user_error(capsys, "recipe", "check", recipe, "--set", "data.download=true",
                         "--set", "data.options.test_csv=test.csv")
    assert message.startswith("data.download: data set 'csv' cannot download its files")


def test_a_missing_csv_file(capsys, tmp_path):
    root = write_folder(tmp_path / "images", {"a": 2, "b": 2})
    recipe = write_recipe(tmp_path / "r.yaml", {
        "dataset": "csv", "root": str(root),
        "options": {"train_csv": "train.csv", "test_csv": "test.csv"},
    })
    message = user_error(capsys, "recipe", "check", recipe)
    assert str(root / "train.csv") in message and "train_csv" in message, message


def test_a_weights_file_that_does_not_exist(capsys, tmp_path):
    missing = tmp_path / "weights" / "resnet.pt"
    message = user_error(capsys, "recipe", "check", "demo",
                         "--set", f"model.backbone.weights={missing}")
    assert message == f"weights file {missing} not found: check model.backbone.weights"


def test_a_weights_file_of_another_architecture(capsys, tmp_path):
    import torch

    path = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3)}, path)
    message = user_error(capsys, "recipe", "check", "demo", "--set", f"model.backbone.weights={path}")
    assert str(path) in message and "model.backbone.weights" in message, message


def test_a_class_with_one_image_cannot_be_in_a_carved_validation_split(capsys, tmp_path):
    root = write_folder(tmp_path / "images", {"common": 5, "rare": 1})
    recipe = write_recipe(tmp_path / "r.yaml", {"dataset": "folder", "root": str(root),
                                                 "validation_fraction": 0.2})
    message = user_error(capsys, "recipe", "check", recipe)
    assert message.startswith("data.validation_fraction=0.2: class 'rare' has a single training "
                              "image"), message
    main(["recipe", "check", str(recipe), "--set", "data.validation_fraction=0"])
    assert capsys.readouterr().out.strip() == f"{recipe}: ok (checked)"


def test_select_best_without_a_validation_split(capsys, tmp_path):
    root = write_folder(tmp_path / "images", {"a": 3, "b": 3})
    recipe = write_recipe(tmp_path / "r.yaml", {"dataset": "folder", "root": str(root)})
    message = user_error(capsys, "recipe", "check", recipe, "--set", "train.select=best")
    assert message.startswith("train.select is 'best' but the run has no validation split")


def test_an_image_size_the_backbone_cannot_take(capsys):
    message = user_error(capsys, "recipe", "check", "demo", "--set", "model.backbone.name=vit_tiny_patch16_224",
                         "--set", "data.image_size=40")
    assert message.startswith("data.image_size 40 does not suit backbone 'vit_tiny_patch16_224'"), message


def test_sampler_options_are_checked_before_decoding(capsys):
    message = user_error(capsys, "recipe", "check", "demo", "--set", "train.sampler.options={per_clas: 2}")
    assert message.startswith("train.sampler:"), message


def test_nothing_is_downloaded(capsys, tmp_path, monkeypatch):
    """ImageNet weights that `run` would fetch are not fetched, and data.download is not acted on."""
    import timm

    from synergic.data.datasets import isic2016

    def no_network(*args, **kwargs):
        raise AssertionError("recipe check downloaded something")

    monkeypatch.setattr(isic2016, "download", no_network)
    monkeypatch.setattr(timm.models._builder, "load_pretrained", no_network)
    main(["recipe", "check", "demo", "--set", "model.backbone.pretrained=true"])
    assert capsys.readouterr().out.strip() == "demo: ok (demo)"
    message = user_error(capsys, "recipe", "check", "isic2016_sdl2", "--set", "data.download=true",
                         "--set", f"data.root={tmp_path / 'isic'}")
    assert message.startswith(f"ISIC 2016 not found at {tmp_path / 'isic'}"), message
