"""The training loop: the schedule, SDL^n, learning, checkpoints and evaluation."""

from __future__ import annotations

import csv

import pytest
import torch

from synergic import BalancedPairSampler, SynergicLoss, Trainer, build_model, evaluate
from synergic.training.trainer import default_optimizer
from synergic.training.schedules import inverse_time_lr


def blob_task(n: int, seed: int, size: int = 32):
    """Noise images; class 1 has a bright blob, class 0 a dark one: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    images = torch.randint(60, 140, (n, 3, size, size), generator=g, dtype=torch.int64)
    for k in range(n):
        y, x = torch.randint(0, size - 10, (2,), generator=g).tolist()
        images[k, :, y : y + 10, x : x + 10] = 230 if labels[k] else 10
    return images.to(torch.uint8), labels


def make_trainer(n_components=2, iterations=10, lam=3.0, **kwargs):
    images, labels = blob_task(64, seed=0)
    torch.manual_seed(0)
    model = build_model("test_efficientnet", num_classes=2, components=n_components, hidden=32)
    options = dict(
        mean=(0.5,) * 3, std=(0.25,) * 3, iterations=iterations, augmentation=None, seed=0,
        optimizer=default_optimizer(model, lr=0.01, momentum=0.9),
    )
    options.update(kwargs)
    sampler = BalancedPairSampler(labels.tolist(), num_streams=n_components, batch_size=8, seed=0)
    return Trainer(model, SynergicLoss(lam), sampler, images, labels, **options)


def test_learning_rate_follows_the_papers_schedule(tmp_path):
    seen = []

    class Record:
        def on_log(self, trainer, row):
            seen.append((row["step"], row["lr"], trainer.optimizer.param_groups[0]["lr"]))

    model = build_model("test_efficientnet", num_classes=2, components=1, hidden=8)
    trainer = make_trainer(
        n_components=1, iterations=6, lr_schedule=inverse_time_lr(0.5), log_every=1,
        optimizer=default_optimizer(model, lr=0.1), callbacks=[Record()],
    )
    trainer.model = model
    trainer.fit()
    # eta(t) = eta0 / (1 + gamma t), t = 0, 1, ...: the rate used by the step that ends at t+1
    assert [round(lr, 10) for _, lr, _ in seen] == [round(0.1 / (1 + 0.5 * t), 10) for t in range(6)]
    assert seen[-1][2] == pytest.approx(0.1 / (1 + 0.5 * 5))


def test_sdl3_has_three_heads_and_trains(tmp_path):
    trainer = make_trainer(n_components=3, iterations=4, log_every=1, log_path=tmp_path / "log.csv")
    assert len(trainer.model.heads) == 3
    before = [p.clone() for p in trainer.model.heads.parameters()]
    trainer.fit()
    after = list(trainer.model.heads.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert {"loss", "ce_1", "ce_2", "ce_3", "synergic_12", "synergic_13", "synergic_23", "lr"} <= set(rows[0])


@pytest.mark.slow
def test_sdl_learns_a_learnable_task_well_above_chance():
    trainer = make_trainer(iterations=40)
    trainer.fit()
    images, labels = blob_task(96, seed=1)
    result = trainer.evaluate(images, labels)
    assert result.metrics["auc"] > 0.85, result.metrics
    assert len(result.component_metrics) == 2
    assert all(m["auc"] > 0.75 for m in result.component_metrics)


def test_checkpoint_resume_continues_exactly(tmp_path):
    full = make_trainer(iterations=6, checkpoint_dir=tmp_path / "a")
    full.fit()
    first = make_trainer(iterations=3, checkpoint_dir=tmp_path / "b")
    first.fit()
    resumed = make_trainer(iterations=6, checkpoint_dir=tmp_path / "b")
    resumed.resume(tmp_path / "b" / "last.pt")
    assert resumed.state.step == 3
    resumed.fit()
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_validation_keeps_the_best_checkpoint(tmp_path):
    images, labels = blob_task(32, seed=2)
    trainer = make_trainer(iterations=4, eval_every=2, validation=(images, labels), checkpoint_dir=tmp_path)
    state = trainer.fit()
    assert [h["step"] for h in state.validation_history] == [2, 4]
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    assert state.best_step in (2, 4)


def test_non_finite_loss_stops_with_the_step_and_term(tmp_path):
    trainer = make_trainer(iterations=5, log_every=1, checkpoint_dir=tmp_path)
    torch.nn.init.constant_(trainer.model.components[0].classifier.weight, float("nan"))
    from synergic.training.trainer import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match="'loss' is nan at step 1"):
        trainer.fit()
    assert not (tmp_path / "last.pt").exists()


def test_evaluate_reports_aggregate_and_components():
    trainer = make_trainer(iterations=1)
    images, labels = blob_task(16, seed=3)
    result = evaluate(trainer.model, images, labels, mean=(0.5,) * 3, std=(0.25,) * 3)
    summed = sum(p for p in result.component_probabilities) / 2
    torch.testing.assert_close(result.probabilities, summed)
    assert set(result.metrics) >= {"ap", "auc", "accuracy"}
