"""Fused components (synergic.models.fused) compute what the components one by one compute:
losses, gradients, updates and per-component BatchNorm running statistics; a fused run's
checkpoint resumes unfused (and back) to the same weights."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from synergic import BalancedPairSampler, SynergicLoss, Trainer, build_model
from synergic.models.fused import FusedSynergicForward, fusion_problem, resolve_fuse_components
from synergic.training.trainer import default_optimizer

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def tiny_model(backbone: str, components: int, dtype=torch.float64):
    torch.manual_seed(0)
    model = build_model(backbone, num_classes=3, components=components, hidden=8,
                        synergic_head_options={"hidden": 8})
    return model.to(dtype)


def gradients(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters()}


# timm's test_resnet (BatchNorm, residual blocks) and test_efficientnet (BatchNorm, depthwise
# convolutions, squeeze-excitation): grouped convolutions under vmap for both.
@pytest.mark.parametrize("backbone", ["test_resnet", "test_efficientnet"])
@pytest.mark.parametrize("components", [2, 3])
def test_fused_forward_gives_the_same_losses_gradients_and_batchnorm_statistics(backbone, components):
    unfused = tiny_model(backbone, components)
    fused_model = copy.deepcopy(unfused)
    assert has_batchnorm(unfused)
    fused = FusedSynergicForward(fused_model)
    loss = SynergicLoss(3.0)
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):  # the running statistics move at every step: compare after several
        streams = [torch.randn(4, 3, 24, 24, generator=generator, dtype=torch.float64)
                   for _ in range(components)]
        labels = [torch.randint(0, 3, (4,), generator=generator) for _ in range(components)]
        a = loss(fused(streams, synergic_grad_scale=3.0), labels)
        b = loss(unfused(streams, synergic_grad_scale=3.0), labels)
        for model, terms in ((fused_model, a), (unfused, b)):
            model.zero_grad(set_to_none=True)
            terms.total.backward()
        torch.testing.assert_close(a.total, b.total, rtol=1e-5, atol=1e-7)
        for ca, cb in zip(a.classification, b.classification):
            torch.testing.assert_close(ca, cb, rtol=1e-5, atol=1e-7)
        theirs = gradients(unfused)
        for name, grad in gradients(fused_model).items():
            torch.testing.assert_close(grad, theirs[name], rtol=1e-5, atol=1e-7, msg=name)
    # Running statistics per component (they differ between components, so none was shared).
    for (name, mine), theirs in zip(fused_model.named_buffers(), unfused.buffers()):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-7, msg=name)
    first_bn = next(name for name, _ in fused_model.components[0].named_buffers()
                    if name.endswith("running_mean"))
    means = [c.get_buffer(first_bn) for c in fused_model.components]
    assert not torch.allclose(means[0], means[1])
    assert int(next(b for n, b in fused_model.named_buffers() if n.endswith("num_batches_tracked"))) == 3


def test_fused_forward_in_float32_agrees_to_float_reassociation():
    unfused = tiny_model("test_resnet", 2, dtype=torch.float32)
    fused_model = copy.deepcopy(unfused)
    streams = torch.randn(2, 4, 3, 32, 32)
    labels = [torch.tensor([0, 1, 2, 0])] * 2
    a = SynergicLoss(3.0)(FusedSynergicForward(fused_model)(streams, synergic_grad_scale=3.0), labels)
    b = SynergicLoss(3.0)(unfused(list(streams), synergic_grad_scale=3.0), labels)
    a.total.backward()
    b.total.backward()
    torch.testing.assert_close(a.total, b.total, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(fused_model.named_parameters(), unfused.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_fused_eval_mode_uses_the_running_statistics_and_leaves_them():
    model = tiny_model("test_resnet", 2).eval()
    before = [b.clone() for b in model.buffers()]
    streams = torch.randn(2, 3, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        fused = FusedSynergicForward(model)(streams)
        plain = model(list(streams))
    for x, y in zip(fused.logits, plain.logits):
        torch.testing.assert_close(x, y)
    for x, y in zip(before, model.buffers()):
        assert torch.equal(x, y)


def make_trainer(model, fuse, images, labels, *, iterations=4):
    sampler = BalancedPairSampler(labels.tolist(), num_streams=model.num_components, batch_size=4, seed=2)
    return Trainer(
        model, SynergicLoss(3.0), sampler, images, labels, mean=MEAN, std=STD,
        iterations=iterations, optimizer=default_optimizer(model, lr=0.05, momentum=0.9),
        augmentation=None, seed=2, device="cpu", fuse_components=fuse, log_every=1,
    )


def test_a_fused_run_resumes_unfused_and_back_to_the_same_weights(tmp_path):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), generator=generator, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0] * 4)
    model = tiny_model("test_resnet", 3, dtype=torch.float32)
    # One run unfused throughout; one fused for 2 steps, unfused for 2, fused for the last 2.
    straight = make_trainer(copy.deepcopy(model), False, images, labels, iterations=6)
    straight.fit()
    legs = []
    for leg, (fuse, stop) in enumerate([(True, 2), (False, 4), (True, 6)]):
        trainer = make_trainer(copy.deepcopy(model), fuse, images, labels, iterations=stop)
        trainer.checkpoint_dir = tmp_path / f"leg{leg}"
        assert trainer.fuse_components is fuse
        assert isinstance(trainer.forward_model, FusedSynergicForward) is fuse
        if legs:
            trainer.resume(legs[-1])
        trainer.fit()
        legs.append(tmp_path / f"leg{leg}" / "last.pt")
    # The checkpoint holds the unfused model's keys and shapes: nothing about fusion.
    saved = torch.load(legs[0], weights_only=False)["model"]
    assert saved.keys() == model.state_dict().keys()
    for (name, mine), theirs in zip(trainer.model.state_dict().items(), straight.model.state_dict().values()):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(trainer.model.state_dict()["heads.0-1.output.weight"],
                           model.state_dict()["heads.0-1.output.weight"])


def test_auto_is_off_on_the_cpu_and_true_falls_back_with_a_reason():
    model = tiny_model("test_resnet", 2, dtype=torch.float32)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert resolve_fuse_components("auto", model, cpu) == (False, None)
    assert resolve_fuse_components("auto", model, gpu) == (True, None)
    assert resolve_fuse_components(True, model, cpu) == (True, None)
    assert resolve_fuse_components(False, model, gpu) == (False, None)
    fuse, reason = resolve_fuse_components(True, model, cpu, distributed=True)
    assert not fuse and "torch.distributed" in reason
    fuse, reason = resolve_fuse_components(True, model, cpu, compile=True)
    assert not fuse and "compile" in reason
    with pytest.raises(ValueError, match="fuse_components"):
        resolve_fuse_components("yes", model, cpu)
    single = tiny_model("test_resnet", 1, dtype=torch.float32)
    assert resolve_fuse_components(True, single, cpu)[0] is False
    images = torch.zeros(8, 3, 32, 32, dtype=torch.uint8)
    with pytest.warns(UserWarning, match="fuse_components is true but .*single component"):
        trainer = make_trainer(single, True, images, torch.tensor([0, 1] * 4))
    assert trainer.fuse_components is False and trainer.forward_model is trainer.model


def test_components_of_different_architectures_are_not_fused():
    mixed = [build_model("test_resnet", num_classes=2, components=1).components[0],
             build_model("test_efficientnet", num_classes=2, components=1).components[0]]
    assert "architecture" in fusion_problem(mixed)
    wider = [build_model("test_resnet", num_classes=2, components=1, hidden=h).components[0] for h in (8, 16)]
    assert "shape" in fusion_problem(wider)
    same = build_model("test_resnet", num_classes=2, components=2).components
    assert fusion_problem(list(same)) is None


def test_a_backbone_vmap_refuses_runs_unfused_with_a_warning():
    class Noisy(nn.Module):  # dropout in training: vmap refuses its randomness
        num_features = 4

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            return self.drop(self.conv(x).mean(dim=(2, 3)))

    from synergic.models.component import DCNNComponent
    from synergic.models.sdl import SynergicModel
    from synergic.models.synergic_head import MLPSynergicHead

    model = SynergicModel([DCNNComponent(Noisy(), 2, hidden=4) for _ in range(2)],
                          {"0-1": MLPSynergicHead(8, hidden=4)})
    fused = FusedSynergicForward(model)
    with pytest.warns(UserWarning, match="one by one: torch.vmap cannot run this backbone"):
        output = fused([torch.randn(2, 3, 8, 8)] * 2)
    assert fused.unfused_reason and len(output.logits) == 2
