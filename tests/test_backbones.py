from __future__ import annotations

import pickle

import pytest
import timm
import torch
from safetensors.torch import save_file

from synergic.errors import SynergicError
from synergic.models.backbones import backbone_normalization, create_backbone


def reference_state(name="test_efficientnet", num_classes=0):
    torch.manual_seed(123)
    return timm.create_model(name, num_classes=num_classes).state_dict()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_local_weights_are_loaded_and_verified(tmp_path, suffix):
    state = reference_state()
    path = tmp_path / f"w{suffix}"
    if suffix == ".pt":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    backbone = create_backbone("test_efficientnet", weights=str(path))
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert backbone.num_features == 256


def test_a_classifier_checkpoint_in_a_wrapper_loads(tmp_path):
    full = reference_state(num_classes=1000)  # with classifier.weight / classifier.bias
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in full.items()}, "epoch": 3}, path)
    backbone = create_backbone("test_efficientnet", weights=str(path))
    assert torch.equal(backbone.state_dict()["conv_stem.weight"], full["conv_stem.weight"])


def test_weights_of_another_architecture_are_refused(tmp_path):
    # timm's own loader would accept this file "successfully" (strict=False when the classifier
    # size differs) and leave the backbone random.
    path = tmp_path / "resnet.pt"
    torch.save(reference_state("test_resnet"), path)
    with pytest.raises(SynergicError, match="does not match this backbone"):
        create_backbone("test_efficientnet", weights=str(path))


def test_a_tensor_of_the_wrong_shape_is_refused(tmp_path):
    state = reference_state()
    state["conv_stem.weight"] = torch.zeros(1, 1, 1, 1)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(SynergicError, match="conv_stem.weight has shape"):
        create_backbone("test_efficientnet", weights=str(path))


def test_extra_unknown_tensors_are_refused(tmp_path):
    state = reference_state()
    state["adapter.weight"] = torch.zeros(3)
    path = tmp_path / "extra.pt"
    torch.save(state, path)
    with pytest.raises(SynergicError, match="does not have"):
        create_backbone("test_efficientnet", weights=str(path))


class NotTensors:
    pass


def test_pickled_code_is_not_executed(tmp_path):
    path = tmp_path / "evil.pt"
    with path.open("wb") as handle:
        pickle.dump({"x": NotTensors()}, handle)
    with pytest.raises(SynergicError, match="could not be read"):
        create_backbone("test_efficientnet", weights=str(path))


def test_missing_weights_file(tmp_path):
    with pytest.raises(SynergicError, match="not found: check model.backbone.weights"):
        create_backbone("test_efficientnet", weights=str(tmp_path / "nope.pt"))


def test_unknown_backbone_suggests_timm_names():
    with pytest.raises(SynergicError, match="did you mean 'resnet50'"):
        create_backbone("resnet5O")


def test_pretrained_without_network_says_what_to_do(monkeypatch):
    import timm.models._hub

    def no_network(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    # What huggingface_hub raises on a machine without network, without waiting for timeouts.
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", no_network)
    with pytest.raises(SynergicError, match="set model.backbone.weights"):
        create_backbone("test_efficientnet", pretrained=True)


def test_normalisation_comes_from_the_pretrained_cfg():
    mean, std = backbone_normalization(create_backbone("test_resnet"))
    assert mean == (0.5, 0.5, 0.5) and std == (0.5, 0.5, 0.5)
    mean, _ = backbone_normalization(torch.nn.Linear(1, 1))
    assert mean == (0.485, 0.456, 0.406)
