from __future__ import annotations

import argparse
import pickle
from pathlib import Path

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


def test_a_plain_pickle_is_not_a_weights_file(tmp_path):
    path = tmp_path / "pickled.pt"
    with path.open("wb") as handle:
        pickle.dump({"x": NotTensors()}, handle)
    with pytest.raises(SynergicError, match="could not be read as a torch.save or safetensors"):
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


# -- weights from other trainers ------------------------------------------------------------------
# Each file is written as the trainer writes it: timm's own CheckpointSaver, torchvision's
# reference train.py layout with a real AveragedModel, a LightningModule's checkpoint dict.


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and len(message) < 600, message
    return message


def trained_timm_model(num_classes=3):
    """A test_efficientnet with a classifier after one SGD step (weights differ from the seed's)."""
    torch.manual_seed(7)
    model = timm.create_model("test_efficientnet", num_classes=num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    return model, optimizer


def step(model, optimizer):
    optimizer.zero_grad()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()


def assert_loaded(backbone, state):
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.fixture
def timm_checkpoint(tmp_path):
    """``last.pth.tar`` written by timm's CheckpointSaver, as timm's train.py writes it:
    ``args`` (argparse.Namespace), ``state_dict``, ``state_dict_ema``, ``optimizer``, ..."""
    from timm.utils import CheckpointSaver, ModelEmaV3

    model, optimizer = trained_timm_model()
    ema = ModelEmaV3(model, decay=0.5)
    step(model, optimizer)
    ema.update(model)  # EMA now half-way between the two steps: differs from the model
    args = argparse.Namespace(
        model="test_efficientnet", lr=0.1, data_dir="/data/isic", input_size=[3, 32, 32],
        mean=None, model_ema=True, device="cuda:0", amp=False,
    )
    folder = tmp_path / "timm"
    folder.mkdir()
    saver = CheckpointSaver(model, optimizer, args=args, model_ema=ema, checkpoint_dir=str(folder))
    saver.save_checkpoint(epoch=4, metric=0.75)
    path = folder / "last.pth.tar"
    # The file really is what timm writes: an argparse.Namespace that a plain weights-only
    # load refuses.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    return path, model.state_dict(), ema.module.state_dict()


def test_a_timm_train_checkpoint_loads_its_state_dict_not_the_ema(timm_checkpoint):
    path, model_state, ema_state = timm_checkpoint
    assert not torch.equal(model_state["conv_stem.weight"], ema_state["conv_stem.weight"])
    assert_loaded(create_backbone("test_efficientnet", weights=str(path)), model_state)


def test_weights_key_picks_the_ema_copy(timm_checkpoint):
    path, _, ema_state = timm_checkpoint
    backbone = create_backbone("test_efficientnet", weights=str(path), weights_key="state_dict_ema")
    assert_loaded(backbone, ema_state)


def test_a_wrong_weights_key_lists_the_state_dicts_in_one_line(timm_checkpoint):
    path, _, _ = timm_checkpoint
    with pytest.raises(SynergicError) as error:
        create_backbone("test_efficientnet", weights=str(path), weights_key="ema")
    message = one_line(error)
    assert "no key 'ema'" in message and "args, state_dict, state_dict_ema" in message
    assert message.endswith("set model.backbone.weights_key to one of state_dict, state_dict_ema")


def test_a_weights_key_that_is_not_a_state_dict_is_refused(timm_checkpoint):
    path, _, _ = timm_checkpoint
    with pytest.raises(SynergicError) as error:
        create_backbone("test_efficientnet", weights=str(path), weights_key="args")
    assert "key 'args' holds an argparse.Namespace, not a state dict; set" in one_line(error)


def test_a_torchvision_reference_checkpoint_with_an_averaged_model(tmp_path):
    # torchvision's references/classification/train.py: {"model", "optimizer", "lr_scheduler",
    # "epoch", "args", "model_ema"}, the EMA an AveragedModel (module. prefix, n_averaged).
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    model, optimizer = trained_timm_model()
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.5))
    step(model, optimizer)
    ema.update_parameters(model)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30)
    path = tmp_path / "model_4.pth"
    torch.save(
        {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "lr_scheduler": scheduler.state_dict(), "epoch": 4,
            "args": argparse.Namespace(model="test_efficientnet", lr=0.5, output_dir=Path("/out")),
            "model_ema": ema.state_dict(),
        },
        path,
    )
    assert "n_averaged" in ema.state_dict()
    assert_loaded(create_backbone("test_efficientnet", weights=str(path)), model.state_dict())
    backbone = create_backbone("test_efficientnet", weights=str(path), weights_key="model_ema")
    assert_loaded(backbone, ema.module.state_dict())


def lightning_checkpoint(state_dict: dict, optimizer) -> dict:
    """The dict Lightning's Trainer.save_checkpoint writes (pytorch-lightning 2.x)."""
    return {
        "epoch": 2,
        "global_step": 30,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": state_dict,
        "loops": {
            "fit_loop": {
                "state_dict": {},
                "epoch_progress": {"total": {"ready": 3, "completed": 2}, "current": {"ready": 3}},
                "epoch_loop.state_dict": {"_batches_that_stepped": 30},
            }
        },
        "callbacks": {
            "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 0}": {
                "monitor": "val_loss",
                "best_model_score": torch.tensor(0.42),
                "best_model_path": "/runs/lightning_logs/version_0/checkpoints/epoch=1.ckpt",
                "dirpath": "/runs/lightning_logs/version_0/checkpoints",
                "best_k_models": {"/runs/epoch=1.ckpt": torch.tensor(0.42)},
            }
        },
        "optimizer_states": [optimizer.state_dict()],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {
            "backbone": "test_efficientnet", "lr": 1e-3, "data_dir": Path("/data/isic"),
            "classes": ("nevus", "melanoma"),
        },
    }


def test_a_lightning_checkpoint_with_a_model_prefix_and_a_loss_buffer(tmp_path):
    # A LightningModule with self.model = timm.create_model(...) and
    # self.criterion = nn.CrossEntropyLoss(weight=...): the weight is a buffer of the checkpoint.
    model, optimizer = trained_timm_model()
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["criterion.weight"] = torch.tensor([1.0, 4.0, 1.0])
    path = tmp_path / "epoch=2-step=30.ckpt"
    torch.save(lightning_checkpoint(state, optimizer), path)
    assert_loaded(create_backbone("test_efficientnet", weights=str(path)), model.state_dict())


def test_a_lightning_checkpoint_with_an_ema_submodule_needs_weights_key(tmp_path):
    from timm.utils import ModelEmaV3

    model, optimizer = trained_timm_model()
    ema = ModelEmaV3(model, decay=0.5)
    step(model, optimizer)
    ema.update(model)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state.update({f"ema.module.{k}": v for k, v in ema.module.state_dict().items()})
    path = tmp_path / "last.ckpt"
    torch.save(lightning_checkpoint(state, optimizer), path)
    with pytest.raises(SynergicError) as error:
        create_backbone("test_efficientnet", weights=str(path))
    assert "under several key prefixes (ema.module., model.)" in one_line(error)
    backbone = create_backbone("test_efficientnet", weights=str(path), weights_key="ema")
    assert_loaded(backbone, ema.module.state_dict())
    backbone = create_backbone("test_efficientnet", weights=str(path), weights_key="model.")
    assert_loaded(backbone, model.state_dict())


@pytest.mark.parametrize(
    "prefix",
    ["module.", "_orig_mod.", "module._orig_mod.", "_orig_mod.module.", "model._orig_mod."],
)
def test_ddp_and_compile_prefixes_are_removed(tmp_path, prefix):
    state = reference_state()
    path = tmp_path / "wrapped.pth"
    torch.save({f"{prefix}{k}": v for k, v in state.items()}, path)
    assert_loaded(create_backbone("test_efficientnet", weights=str(path)), state)


def test_safetensors_are_recognised_by_their_header_whatever_the_suffix(tmp_path):
    state = reference_state()
    path = tmp_path / "model.bin"  # as some hubs name them
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    assert_loaded(create_backbone("test_efficientnet", weights=str(path)), state)


def test_an_only_state_dict_under_another_key_is_found(tmp_path):
    state = reference_state()
    path = tmp_path / "net.pth"
    torch.save({"net": state, "epoch": 9, "best_auc": 0.8}, path)
    assert_loaded(create_backbone("test_efficientnet", weights=str(path)), state)


def test_several_state_dicts_and_no_default_need_weights_key(tmp_path):
    state = reference_state()
    path = tmp_path / "distilled.pth"
    torch.save({"student": state, "teacher": state, "epoch": 9}, path)
    with pytest.raises(SynergicError) as error:
        create_backbone("test_efficientnet", weights=str(path))
    assert one_line(error).endswith(
        "holds state dicts under keys student, teacher: "
        "set model.backbone.weights_key to one of them"
    )
    backbone = create_backbone("test_efficientnet", weights=str(path), weights_key="teacher")
    assert_loaded(backbone, state)


def test_a_checkpoint_without_a_state_dict(tmp_path):
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 9, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(SynergicError) as error:
        create_backbone("test_efficientnet", weights=str(path))
    assert "holds no state dict (a dict with keys epoch, args)" in one_line(error)


def test_weights_key_on_a_plain_state_dict(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save(reference_state(), path)
    with pytest.raises(SynergicError) as error:
        create_backbone("test_efficientnet", weights=str(path), weights_key="state_dict_ema")
    assert "is one state dict" in one_line(error) and "remove model.backbone.weights_key" in str(
        error.value
    )


def test_weights_key_without_weights():
    with pytest.raises(SynergicError, match="weights_key is set but model.backbone.weights is not"):
        create_backbone("test_efficientnet", weights_key="state_dict_ema")


def write_marker(path):
    Path(path).write_text("the checkpoint ran code")


class RunsCodeWhenLoaded:
    """Pickles as a call of write_marker: unpickling it with plain pickle writes a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (write_marker, (str(self.marker),))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_pickled_callable_is_refused_in_one_line_and_not_run(tmp_path, zip_format):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pth"
    checkpoint = {"state_dict": reference_state(), "hook": RunsCodeWhenLoaded(marker)}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(SynergicError) as error:
        create_backbone("test_efficientnet", weights=str(path))
    message = one_line(error)
    assert f"{write_marker.__module__}.write_marker" in message
    assert "which synergic does not load" in message
    assert "torch.save(model.state_dict(), PATH)" in message
    assert not marker.exists()
    # The file really runs code when loaded without the weights-only guard.
    torch.load(path, weights_only=False)
    assert marker.read_text() == "the checkpoint ran code"


def test_a_registered_factory_without_weights_key_says_so(tmp_path):
    from synergic import registry

    def tiny(*, pretrained, weights):
        return timm.create_model("test_efficientnet", num_classes=0)

    registry.backbones.register("tiny_for_weights_key", tiny)
    try:
        with pytest.raises(SynergicError, match="takes no model.backbone.weights_key"):
            create_backbone("tiny_for_weights_key", weights="w.pt", weights_key="state_dict_ema")
    finally:
        registry.backbones.unregister("tiny_for_weights_key")


def test_the_recipe_keys_reach_every_component(timm_checkpoint, tiny_recipe):
    from synergic.experiment import build_recipe_model
    from synergic.recipe import load_recipe

    path, _, ema_state = timm_checkpoint
    recipe = load_recipe(
        tiny_recipe,
        [f"model.backbone.weights={path}", "model.backbone.weights_key=state_dict_ema"],
    )
    model = build_recipe_model(recipe, num_classes=2)
    backbones = [m for m in model.modules() if type(m).__name__ == "EfficientNet"]
    assert len(backbones) == recipe.model.components == 2
    for backbone in backbones:
        assert_loaded(backbone, ema_state)
