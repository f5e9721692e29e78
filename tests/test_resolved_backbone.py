"""resolved_backbone: the pretrained tag timm resolves a backbone name to, shown by `recipe show`
and recorded in every run (checkpoint metadata, metrics.json); the rotation fill reaching the
training loop."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from synergic.cli import cli
from synergic.errors import SynergicError
from synergic.models.backbones import create_backbone, describe_backbone, resolved_backbone
from synergic.recipe import load_recipe


@pytest.mark.parametrize(
    "name, tag",
    [
        ("resnet50", "a1_in1k"),  # timm's default: the "ResNet strikes back" A1 recipe
        ("resnet50.tv_in1k", "tv_in1k"),  # the torchvision ImageNet weights the recipes pin
        ("test_efficientnet", "r160_in1k"),
    ],
)
def test_a_name_resolves_to_timms_pretrained_tag_without_building_anything(name, tag):
    resolved = resolved_backbone(name, pretrained=True)
    assert resolved == {
        "backbone": name,
        "architecture": name.split(".")[0],
        "pretrained_tag": tag,
        "weights_source": "hub",
    }


def test_the_weights_source_says_file_hub_or_none():
    with_file = resolved_backbone("resnet50", pretrained=True, weights="weights.pt")
    assert with_file["weights_source"].startswith("file /")
    assert with_file["weights_source"].endswith("/weights.pt")
    assert with_file["pretrained_tag"] == "a1_in1k"  # still the tag (it sets mean and std)
    assert resolved_backbone("resnet50", pretrained=False)["weights_source"] == "none"
    assert describe_backbone(resolved_backbone("resnet50", pretrained=True)) == (
        "resnet50 -> timm resnet50.a1_in1k, weights: hub"
    )


def test_a_registered_backbone_names_its_factory():
    from synergic import registry

    name = "tiny_registered_for_resolution"
    registry.backbones.register(name, lambda **kwargs: None, origin="my-plugin")
    try:
        module = torch.nn.Identity()
        module.pretrained_cfg = {"source": "my-weights 1.0"}
        resolved = resolved_backbone(name, pretrained=True, backbone=module)
        assert resolved == {
            "backbone": name, "architecture": name, "pretrained_tag": None,
            "weights_source": "factory my-plugin (my-weights 1.0)",
        }
        assert resolved_backbone(name)["weights_source"] == "none"
    finally:
        registry.backbones.unregister(name)


def test_unknown_names_and_tags_are_one_line_errors():
    with pytest.raises(SynergicError, match=r"no pretrained tag 'tv_in22k' for resnet50; its "
                                            r"tags are .*tv_in1k.*: check model.backbone.name$"):
        resolved_backbone("resnet50.tv_in22k")
    with pytest.raises(SynergicError, match="neither a registered backbone nor a timm model"):
        resolved_backbone("resnet_fifty")


def test_recipe_show_prints_the_tag_as_a_comment_and_stays_a_recipe(tmp_path):
    result = CliRunner().invoke(cli, ["recipe", "show", "isic2016_resnet50"])
    assert result.exit_code == 0, result.output
    first, _, rest = result.stdout.partition("\n")
    assert first == "# model.backbone: resnet50.tv_in1k -> timm resnet50.tv_in1k, weights: hub"
    shown = tmp_path / "shown.yaml"
    shown.write_text(result.stdout)
    assert load_recipe(shown) == load_recipe("isic2016_resnet50")
    plain = CliRunner().invoke(
        cli, ["recipe", "show", "isic2016_resnet50", "--set", "model.backbone.name=resnet50"]
    )
    assert plain.stdout.startswith("# model.backbone: resnet50 -> timm resnet50.a1_in1k,")


def test_a_run_records_the_backbone_and_trains_with_the_recipes_fill(
    tiny_recipe, tmp_path, monkeypatch, one_torch_thread
):
    import synergic.data.augment as augment
    from synergic.experiment import run
    from synergic.training.checkpoint import load_checkpoint

    weights = tmp_path / "backbone.pt"
    torch.save(create_backbone("test_efficientnet").state_dict(), weights)
    fills = []
    original = augment.augment_batch

    def recording(*args, **kwargs):
        fills.append(kwargs["fill"])
        return original(*args, **kwargs)

    monkeypatch.setattr(augment, "augment_batch", recording)
    recipe = load_recipe(
        tiny_recipe, [f"model.backbone.weights={weights}", "data.augment.fill=border"]
    )
    lines = []
    result = run(recipe, tmp_path / "run", on_info=lines.append)

    expected = {
        "backbone": "test_efficientnet", "architecture": "test_efficientnet",
        "pretrained_tag": "r160_in1k", "weights_source": f"file {weights}",
    }
    assert result.metrics["backbone"] == expected
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["backbone"] == expected
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["metadata"]["backbone"] == expected
    described = "test_efficientnet -> timm test_efficientnet.r160_in1k, weights: file"
    assert f"backbone: {described} {weights}" in lines
    assert fills and set(fills) == {"border"}
