"""The SDL^n model and the gradients of eq. (5)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from synergic import SynergicLoss, SynergicModel, build_model
from synergic.aggregators import max_softmax, mean_logits, sum_softmax, vote
from synergic.models.component import DCNNComponent
from synergic.models.sdl import pair_key
from synergic.models.synergic_head import MLPSynergicHead


class ScaleBackbone(nn.Module):
    """A backbone whose features are x * s: small enough to differentiate by hand."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim
        self.s = nn.Parameter(torch.linspace(0.5, 1.5, dim))

    def forward(self, x):
        return x * self.s


class LinearHead(nn.Module):
    """A synergic head z = w . [f_i, f_j] + b."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 1)

    def forward(self, pair):
        return self.linear(pair).squeeze(-1)


def tiny_sdl(n: int = 2, dim: int = 3, hidden: int = 4, classes: int = 2) -> SynergicModel:
    torch.manual_seed(0)
    parts = [DCNNComponent(ScaleBackbone(dim), classes, hidden=hidden) for _ in range(n)]
    heads = {pair_key(i, j): LinearHead(2 * hidden) for i in range(n) for j in range(i + 1, n)}
    return SynergicModel(parts, heads)


def synergic_grads(model, streams, labels, loss):
    model.zero_grad()
    out = model(streams, synergic_grad_scale=loss.feature_grad_scale)
    terms = loss(out, labels)
    # Only the synergic part of the objective: the CE terms do not depend on the heads.
    weight = 1.0 if loss.gradient == "paper" else loss.synergic_weight
    (weight * sum(terms.synergic.values())).backward()
    return [c.backbone.s.grad.clone() for c in model.components], model.heads["0-1"].linear.weight.grad.clone()


def hand_computed(model, streams, labels):
    """dBCE/ds_A, dBCE/ds_B and dBCE/dw for z = w.[f_A, f_B] + b, f = E(x*s) + c, by hand."""
    (xa, xb), (ya, yb) = streams, labels
    ca, cb = model.components
    head = model.heads["0-1"].linear
    fa = ca.embedding(xa * ca.backbone.s)
    fb = cb.embedding(xb * cb.backbone.s)
    z = head(torch.cat([fa, fb], 1)).squeeze(-1)
    y = (ya == yb).float()
    dz = (torch.sigmoid(z) - y) / len(y)  # d mean-BCE / dz
    w = head.weight.squeeze(0)
    hidden = fa.shape[1]
    d_fa = dz[:, None] * w[:hidden]  # [B, hidden]
    d_fb = dz[:, None] * w[hidden:]
    d_sa = ((d_fa @ ca.embedding.weight) * xa).sum(0)
    d_sb = ((d_fb @ cb.embedding.weight) * xb).sum(0)
    d_w = (dz[:, None] * torch.cat([fa, fb], 1)).sum(0)
    return d_sa.detach(), d_sb.detach(), d_w.detach()


@pytest.fixture
def case():
    g = torch.Generator().manual_seed(1)
    streams = [torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)]
    labels = [torch.tensor([0, 1, 0, 1, 1, 0]), torch.tensor([0, 0, 1, 1, 0, 0])]
    return streams, labels


@pytest.mark.parametrize("lam", [0.5, 3.0])
def test_paper_rule_scales_backbone_synergic_gradient_by_lambda_but_not_the_head(case, lam):
    streams, labels = case
    model = tiny_sdl()
    d_sa, d_sb, d_w = hand_computed(model, streams, labels)
    (g_a, g_b), g_w = synergic_grads(model, streams, labels, SynergicLoss(lam, gradient="paper"))
    torch.testing.assert_close(g_a, lam * d_sa)
    torch.testing.assert_close(g_b, lam * d_sb)
    torch.testing.assert_close(g_w.squeeze(0), d_w)  # eq. (5): theta_S moves by Delta_S alone


def test_joint_rule_scales_the_head_gradient_too(case):
    streams, labels = case
    model = tiny_sdl()
    d_sa, _, d_w = hand_computed(model, streams, labels)
    (g_a, _), g_w = synergic_grads(model, streams, labels, SynergicLoss(3.0, gradient="joint"))
    torch.testing.assert_close(g_a, 3.0 * d_sa)
    torch.testing.assert_close(g_w.squeeze(0), 3.0 * d_w)


def test_full_update_is_ce_gradient_plus_lambda_synergic_gradient(case):
    streams, labels = case
    model = tiny_sdl()
    loss = SynergicLoss(3.0)
    d_sa, d_sb, _ = hand_computed(model, streams, labels)
    # dCE_A/ds_A alone, from a model run where the heads are detached.
    model.zero_grad()
    out = model(streams)
    torch.nn.functional.cross_entropy(out.logits[0], labels[0]).backward()
    ce_grad_a = model.components[0].backbone.s.grad.clone()
    model.zero_grad()
    out = model(streams, synergic_grad_scale=loss.feature_grad_scale)
    loss(out, labels).total.backward()
    torch.testing.assert_close(model.components[0].backbone.s.grad, ce_grad_a + 3.0 * d_sa)
    # component B's CE does not reach component A, nor A's reach B (theta not shared, §3.2)
    assert model.components[0].backbone.s.grad is not model.components[1].backbone.s.grad


@pytest.mark.parametrize("gradient", ["paper", "joint"])
def test_lambda_zero_sends_no_synergic_gradient_into_the_backbones(case, gradient):
    streams, labels = case
    model = tiny_sdl()
    (g_a, g_b), g_w = synergic_grads(model, streams, labels, SynergicLoss(0.0, gradient=gradient))
    assert torch.count_nonzero(g_a) == 0 and torch.count_nonzero(g_b) == 0
    if gradient == "paper":
        assert torch.count_nonzero(g_w) > 0  # the heads still learn


def test_synergic_gradient_reaches_both_timm_backbones():
    model = build_model("test_efficientnet", num_classes=2, components=2, hidden=16)
    images = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)]
    labels = [torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0, 1, 1])]
    loss = SynergicLoss(3.0)
    out = model(images, synergic_grad_scale=loss.feature_grad_scale)
    sum(loss(out, labels).synergic.values()).backward()
    for component in model.components:
        grads = [p.grad for p in component.backbone.parameters() if p.grad is not None]
        assert grads and sum(g.abs().sum() for g in grads) > 0


def test_component_head_matches_the_paper():
    component = DCNNComponent(ScaleBackbone(5), 3, hidden=1024)
    assert component.embedding.in_features == 5 and component.embedding.out_features == 1024
    assert component.classifier.out_features == 3
    for layer in (component.embedding, component.classifier):
        assert layer.weight.abs().max() <= 0.05 and layer.bias.abs().max() <= 0.05
        assert layer.weight.std() > 0.02  # U(-0.05, 0.05) has std 0.0289
    logits, features = component(torch.randn(2, 5))
    assert logits.shape == (2, 3) and features.shape == (2, 1024)


@pytest.mark.parametrize("n, heads", [(1, 0), (2, 1), (3, 3), (4, 6)])
def test_sdl_n_has_one_head_per_pair(n, heads):
    model = tiny_sdl(n=n)
    assert len(model.heads) == heads
    out = model([torch.randn(2, 3) for _ in range(n)])
    assert sorted(out.pair_logits) == [(i, j) for i in range(n) for j in range(i + 1, n)]
    assert all(v.shape == (2,) for v in out.pair_logits.values())


def test_single_component_loss_is_plain_cross_entropy():
    model = tiny_sdl(n=1)
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    terms = SynergicLoss(3.0)(model([x]), [y])
    torch.testing.assert_close(terms.total, torch.nn.functional.cross_entropy(model([x]).logits[0], y))
    assert terms.synergic == {}


def test_mlp_synergic_head_outputs_one_logit_per_pair():
    head = MLPSynergicHead(8, hidden=5)
    assert head(torch.randn(7, 8)).shape == (7,)


def test_sum_softmax_is_eq_6():
    logits = [torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 3.0], [1.0, 0.0]])]
    summed = logits[0].softmax(-1) + logits[1].softmax(-1)
    probabilities = sum_softmax(logits)
    torch.testing.assert_close(probabilities, summed / 2)
    assert torch.equal(probabilities.argmax(-1), summed.argmax(-1))


def test_other_aggregators():
    logits = [torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[3.0, 0.0, 0.0]])]
    torch.testing.assert_close(mean_logits(logits), torch.tensor([[5 / 3, 1 / 3, 0.0]]).softmax(-1))
    torch.testing.assert_close(vote(logits), torch.tensor([[2 / 3, 1 / 3, 0.0]]))
    best = max_softmax(logits)
    torch.testing.assert_close(best.sum(-1), torch.ones(1))
    assert best.argmax() == 0


def test_invalid_loss_arguments():
    with pytest.raises(ValueError, match="synergic_weight"):
        SynergicLoss(-1.0)
    with pytest.raises(ValueError, match="gradient"):
        SynergicLoss(1.0, gradient="other")
