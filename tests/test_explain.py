"""`synergic explain`: class activation maps per component with pytorch-grad-cam."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from tiny_recipe import write_recipe

from synergic.cli import cli, main
from synergic.errors import SynergicError

pytest.importorskip("pytorch_grad_cam")

CLASSES = ["benign", "malignant"]


def untrained_run(path: Path, backbone: str, image_size: int = 64) -> Path:
    """A run directory holding an untrained SDL^2 of ``backbone``: what open_run reads."""
    from synergic.data.preprocess import Preprocessing
    from synergic.models.sdl import build_model
    from synergic.training.checkpoint import save_checkpoint

    path.mkdir(parents=True)
    write_recipe(path / "recipe.yaml", **{"model.backbone.name": backbone,
                                          "data.image_size": image_size})
    torch.manual_seed(0)
    model = build_model(backbone, num_classes=2, components=2, hidden=16,
                        synergic_head_options={"hidden": 16})
    save_checkpoint(path / "checkpoints" / "last.pt", {
        "model": model.state_dict(),
        "metadata": {"classes": CLASSES, "preprocessing": Preprocessing(image_size).to_dict()},
    })
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, one_torch_thread) -> Path:
    """SDL^2 of a tiny timm ResNet trained for a few steps on 64 px generated lesions: its last
    stage gives 2 x 2 maps, so its CAMs can vary over the image."""
    folder = tmp_path_factory.mktemp("explain")
    recipe = write_recipe(folder / "tiny.yaml", **{
        "model.backbone.name": "test_resnet", "data.image_size": 64,
        "data.options.image_size": 64, "train.eval_every": 0, "train.checkpoint_every": 0,
    })
    result = CliRunner().invoke(cli, ["run", str(recipe), "--output", str(folder / "run"), "-q"])
    assert result.exit_code == 0, result.output
    return folder / "run"


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    generator = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(generator.integers(0, 256, (80, 70, 3), dtype=np.uint8)).save(
            folder / f"lesion{i}.png")
    return folder


@pytest.mark.shared_data
def test_explain_on_the_isic_sample_writes_a_non_constant_map_per_component(
    trained_run, isic_sample, tmp_path
):
    from synergic.explain import explain_images
    from synergic.serving import predict_images

    test_images = sorted((isic_sample / "ISBI2016_ISIC_Part3_Test_Data").glob("*.jpg"))[:3]
    out = tmp_path / "maps"
    result = CliRunner().invoke(
        cli, ["explain", str(trained_run), *map(str, test_images), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    rows = (out / "explanations.csv").read_text().splitlines()
    assert rows[0] == "image,view,class,class_index,probability,method,layer,overlay"
    assert len(rows) == 1 + 3 * 3  # per image: component 1, component 2, aggregate

    explanations = explain_images(trained_run, test_images)
    _, predicted = predict_images(trained_run, test_images)
    for image, probabilities in predicted:
        mine = {e.view: e for e in explanations if e.image == image}
        assert set(mine) == {"component 1", "component 2", "aggregate"}
        best = int(np.argmax(probabilities))
        aggregate = mine["aggregate"]
        # The aggregate's predicted class, with predict's probability, and the components' mean.
        assert aggregate.class_index == best and aggregate.class_name == CLASSES[best]
        assert aggregate.probability == pytest.approx(probabilities[best], abs=1e-6)
        np.testing.assert_allclose(
            aggregate.heatmap, (mine["component 1"].heatmap + mine["component 2"].heatmap) / 2,
            atol=1e-6,
        )
        for view in ("component 1", "component 2"):
            heatmap = mine[view].heatmap
            assert heatmap.shape == (64, 64) and heatmap.dtype == np.float32
            assert 0 <= heatmap.min() and heatmap.max() <= 1
            assert heatmap.std() > 0.01, (image, view)  # not constant
            name = f"{Path(image).stem}_{view.replace(' ', '')}_{CLASSES[best]}.png"
            overlay = np.asarray(Image.open(out / name))
            assert overlay.shape == (64, 64, 3) and overlay.std() > 0


@pytest.mark.parametrize(
    ("backbone", "layer", "reshaped"),
    [("test_resnet", "layer4", False), ("test_efficientnet", "blocks.4", False),
     ("test_vit", "blocks.5.norm1", True)],
)
def test_the_target_layer_is_found_for_timm_families(backbone, layer, reshaped, tmp_path, images):
    from synergic.explain import explain_images, find_target_layer
    from synergic.serving import open_run

    run_dir = untrained_run(tmp_path / "run", backbone)
    target = find_target_layer(open_run(run_dir).model.components[0].backbone, 64)
    assert target.name == layer
    assert (target.reshape_transform is not None) == reshaped

    explanations = explain_images(run_dir, [images], method="gradcam++", target="malignant",
                                  output_dir=tmp_path / "out")
    assert [e.view for e in explanations] == ["component 1", "component 2", "aggregate"] * 2
    for e in explanations:
        assert e.heatmap.shape == (64, 64) and np.isfinite(e.heatmap).all()
        assert e.class_name == "malignant" and e.overlay.is_file()
    assert f",{layer}," in (tmp_path / "out" / "explanations.csv").read_text()


def test_vit_tokens_become_a_map_without_the_class_token():
    from synergic.explain import TokensToMap

    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # 1 prefix + 2 x 2
    grid = TokensToMap(prefix=1, side=2)(tokens)
    assert grid.shape == (2, 3, 2, 2)
    assert torch.equal(grid[:, :, 0, 1], tokens[:, 2, :])  # token 1 of the grid: row 0, column 1


def test_components_option_selects_the_maps_written(trained_run, images, tmp_path):
    out = tmp_path / "maps"
    result = CliRunner().invoke(cli, ["explain", str(trained_run), str(images), "--component",
                                      "2", "--target", "1", "--method", "eigencam", "-o", str(out)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.glob("*.png"))
    assert written == ["lesion0_aggregate_malignant.png", "lesion0_component2_malignant.png",
                       "lesion1_aggregate_malignant.png", "lesion1_component2_malignant.png"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--layer", "layer9"], "--layer 'layer9' is not a module of the backbone (did you mean "
                                "'layer4'?)"),
        (["--layer", "global_pool"], "layer 'global_pool' outputs [1, 96], which is neither"),
        (["--target", "melanoma"], "--target 'melanoma' is not a class of the run: its classes "
                                   "are benign, malignant (or an index 0..1)"),
        (["--target", "2"], "--target '2' is not a class of the run"),
        (["--component", "3"], "--component 3: the run has 2 components, numbered 1 to 2"),
        (["--component", "first"], "--component 'first': give a component number"),
    ],
)
def test_wrong_choices_are_one_line_errors(arguments, message, tmp_path, images, capsys):
    run_dir = untrained_run(tmp_path / "run", "test_resnet")
    with pytest.raises(SystemExit) as exit_:
        main(["explain", str(run_dir), str(images), *arguments])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (run_dir / "explanations").exists()


def test_no_images_is_a_one_line_error(tmp_path):
    from synergic.explain import explain_images

    run_dir = untrained_run(tmp_path / "run", "test_resnet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SynergicError, match=r"empty holds no images") as error:
        explain_images(run_dir, [tmp_path / "empty"], output_dir=tmp_path / "out")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_a_missing_grad_cam_package_names_the_pip_command(tmp_path, images, monkeypatch):
    from synergic.explain import explain_images

    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)  # import raises ImportError
    with pytest.raises(SynergicError,
                       match=r'grad-cam package .*: pip install "synergic\[explain\]"'):
        explain_images(tmp_path / "no-run", [images])


def test_the_command_offers_the_library_methods():
    from synergic.cli.tools import EXPLAIN_METHODS
    from synergic.explain import METHODS

    assert list(EXPLAIN_METHODS) == list(METHODS)
