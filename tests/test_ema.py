"""EMA of the weights (``train.ema``, timm's ``ModelEmaV3``): the update, checkpoints, exact
resume, and the reported model in the run directory, ``eval`` and ``predict``.

Everything runs on the CPU with one torch thread (byte-identical results), with tiny models.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from helpers import invoke_apart
from tiny_recipe import write_recipe

from synergic import BalancedPairSampler, SynergicLoss, Trainer, build_model
from synergic.errors import SynergicError
from synergic.training.checkpoint import load_checkpoint, reported_weights
from synergic.training.trainer import default_optimizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blob_task(n: int, seed: int, size: int = 32):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=generator)
    images = torch.randint(60, 140, (n, 3, size, size), generator=generator, dtype=torch.int64)
    images[labels == 1, :, 8:20, 8:20] = 230
    return images.to(torch.uint8), labels


def make_trainer(iterations: int, **kwargs) -> Trainer:
    images, labels = blob_task(32, seed=0)
    torch.manual_seed(0)
    model = build_model("test_efficientnet", num_classes=2, components=2, hidden=16)
    sampler = BalancedPairSampler(labels.tolist(), num_streams=2, batch_size=4, seed=0)
    options = dict(
        mean=(0.5,) * 3, std=(0.25,) * 3, iterations=iterations, augmentation=None, seed=0,
        optimizer=default_optimizer(model, lr=0.05, momentum=0.9), device="cpu",
    )
    options.update(kwargs)
    return Trainer(model, SynergicLoss(3.0), sampler, images, labels, **options)


def equal_state_dicts(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


# -- the update -------------------------------------------------------------------------------


def test_the_average_follows_timms_recursion_after_every_optimiser_step():
    """e_1 = w_1 (decay 0 at the first update), e_t = d e_{t-1} + (1 - d) w_t: parameters and
    BatchNorm buffers alike; integer buffers are copied."""
    decay = 0.6
    trainer = make_trainer(4, ema={"decay": decay})
    expected = None
    for step in range(4):
        trainer.train_step(step)
        weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        if expected is None:
            expected = weights
        else:
            expected = {
                k: decay * expected[k] + (1 - decay) * w if w.is_floating_point() else w
                for k, w in weights.items()
            }
    averaged = trainer.ema.module.state_dict()
    buffers = [k for k in averaged if "running_mean" in k]
    assert buffers, "the tiny backbone has BatchNorm: its running statistics are averaged"
    for key, value in averaged.items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6, msg=key)
    assert not torch.equal(averaged[buffers[0]], trainer.model.state_dict()[buffers[0]])


def test_the_trainer_evaluates_the_average_unless_told_not_to():
    images, labels = blob_task(16, seed=1)
    reporting = make_trainer(3, ema={"decay": 0.5})
    reporting.fit()
    assert reporting.reported_model is reporting.ema.module
    from synergic.training.evaluation import evaluate

    def probabilities(model):
        return evaluate(model, images, labels, mean=(0.5,) * 3, std=(0.25,) * 3).probabilities

    result = reporting.evaluate(images, labels)
    torch.testing.assert_close(result.probabilities, probabilities(reporting.ema.module), rtol=0, atol=0)
    assert not torch.equal(result.probabilities, probabilities(reporting.model))
    silent = make_trainer(3, ema={"decay": 0.5}, report_ema=False)
    silent.fit()
    assert silent.reported_model is silent.model
    torch.testing.assert_close(silent.evaluate(images, labels).probabilities,
                               probabilities(silent.model), rtol=0, atol=0)


# -- checkpoints ------------------------------------------------------------------------------


def test_checkpoints_hold_the_average_and_best_pt_holds_the_reported_weights(tmp_path):
    images, labels = blob_task(16, seed=1)
    trainer = make_trainer(4, ema={"decay": 0.5}, validation=(images, labels), eval_every=2,
                           checkpoint_dir=tmp_path)
    trainer.fit()
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["reported_weights"] == "model_ema"
    assert equal_state_dicts(last["model"], trainer.model.state_dict())  # resumed from
    assert equal_state_dicts(last["model_ema"], trainer.ema.module.state_dict())
    assert reported_weights(last) is last["model_ema"]
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["model_is_ema"] and "model_ema" not in best  # readers of "model" get the EMA
    assert reported_weights(best) is best["model"]
    if trainer.state.best_step == 4:
        assert equal_state_dicts(best["model"], last["model_ema"])


def test_checkpoints_without_ema_still_load_and_a_mismatch_is_one_line(tmp_path):
    plain = make_trainer(2, checkpoint_dir=tmp_path / "plain")
    plain.fit()
    state = load_checkpoint(tmp_path / "plain" / "last.pt")
    assert "model_ema" not in state and reported_weights(state) is state["model"]
    with pytest.raises(SynergicError, match=r"^the checkpoint holds no EMA weights \(model_ema\)"):
        make_trainer(4, ema={"decay": 0.5}).resume(state)
    averaged = make_trainer(2, ema={"decay": 0.5}, checkpoint_dir=tmp_path / "ema")
    averaged.fit()
    with pytest.raises(SynergicError, match="holds EMA weights .* but this trainer keeps no EMA"):
        make_trainer(4).resume(tmp_path / "ema" / "last.pt")


def test_an_interrupted_and_resumed_trainer_has_the_same_average(tmp_path):
    ema = {"decay": 0.7, "use_warmup": True, "update_after_step": 1}
    full = make_trainer(6, ema=ema, checkpoint_dir=tmp_path / "a")
    full.fit()
    first = make_trainer(3, ema=ema, checkpoint_dir=tmp_path / "b")
    first.fit()
    resumed = make_trainer(6, ema=ema, checkpoint_dir=tmp_path / "b")
    resumed.resume(tmp_path / "b" / "last.pt")
    resumed.fit()
    assert equal_state_dicts(full.ema.module.state_dict(), resumed.ema.module.state_dict())
    assert equal_state_dicts(full.model.state_dict(), resumed.model.state_dict())


# -- runs, eval and predict -----------------------------------------------------------------------


EMA_RECIPE = {"train.ema": {"decay": 0.8}, "train.eval_every": 2}


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory, one_torch_thread) -> Path:
    folder = tmp_path_factory.mktemp("ema")
    recipe = write_recipe(folder / "tiny.yaml", **EMA_RECIPE)
    code, out, err = invoke_apart(["run", recipe, "--output", folder / "run", "--quiet"])
    assert code == 0, err
    return folder / "run"


def test_a_run_records_that_it_reports_the_ema_weights(ema_run):
    metrics = json.loads((ema_run / "metrics.json").read_text())
    assert metrics["selected"]["weights"] == "ema"
    record = json.loads((ema_run / "run.json").read_text())
    assert record["selected"]["weights"] == "ema"
    from synergic.serving import open_run

    run = open_run(ema_run, metrics["selected"]["checkpoint"])
    assert run.weights == "ema"
    last = open_run(ema_run, "last")
    state = load_checkpoint(ema_run / "checkpoints" / "last.pt")
    assert equal_state_dicts(last.model.state_dict(), state["model_ema"])


def test_eval_and_predict_use_the_reported_ema_weights(ema_run, tmp_path):
    from PIL import Image

    from synergic.data.datasets.synthetic import synthetic_lesions

    metrics = json.loads((ema_run / "metrics.json").read_text())
    code, out, err = invoke_apart(["eval", ema_run, "--json"])
    assert code == 0, err
    again = json.loads(out)
    assert again["weights"] == "ema"
    assert again["aggregate"] == pytest.approx(metrics["test"], abs=1e-9)
    test_set = synthetic_lesions(root=None, split="test", num_test=16, image_size=32)
    image, _ = test_set[0]
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / f"{test_set.ids[0]}.png")
    code, out, err = invoke_apart(["predict", ema_run, tmp_path / f"{test_set.ids[0]}.png"])
    assert code == 0, err
    with (ema_run / "predictions.csv").open(newline="") as handle:
        from_run = {row[0]: [float(v) for v in row[1:]] for row in list(csv.reader(handle))[1:]}
    predicted = [float(v) for v in out.splitlines()[1].split(",")[1:3]]
    assert predicted == pytest.approx(from_run[test_set.ids[0]], abs=1e-5)


def test_a_run_resumed_after_an_interruption_is_the_uninterrupted_run(ema_run, tmp_path):
    recipe = write_recipe(tmp_path / "tiny.yaml", **EMA_RECIPE, **{"train.iterations": 4})
    code, out, err = invoke_apart(["run", recipe, "--output", tmp_path / "run", "--quiet"])
    assert code == 0, err
    code, out, err = invoke_apart(["resume", tmp_path / "run", "--set", "train.iterations=6",
                                   "--quiet"])
    assert code == 0, err
    resumed, straight = tmp_path / "run", ema_run
    assert (resumed / "predictions.csv").read_bytes() == (straight / "predictions.csv").read_bytes()
    a = json.loads((resumed / "metrics.json").read_text())
    b = json.loads((straight / "metrics.json").read_text())
    assert a["test"] == b["test"] and a["selected"] == b["selected"]
    assert equal_state_dicts(
        load_checkpoint(resumed / "checkpoints" / "last.pt")["model_ema"],
        load_checkpoint(straight / "checkpoints" / "last.pt")["model_ema"],
    )


def test_the_recipe_key(tmp_path):
    from synergic.recipe import load_recipe, recipe_to_yaml
    from synergic.rundir import identity_hash

    plain = load_recipe(write_recipe(tmp_path / "plain.yaml"))
    assert "ema" not in recipe_to_yaml(plain) and not plain.train.ema.enabled
    shorthand = load_recipe(write_recipe(tmp_path / "on.yaml", **{"train.ema": True}))
    assert shorthand.train.ema.decay == 0.9998 and identity_hash(shorthand) != identity_hash(plain)
    with pytest.raises(SynergicError, match="use_warmup given but decay is null"):
        load_recipe(write_recipe(tmp_path / "bad.yaml", **{"train.ema": {"use_warmup": True}}))


def test_switching_ema_on_or_off_is_one_difference_with_the_keys_given(tmp_path):
    """Resuming a run without EMA with ``--set train.ema.decay=0.9`` names that key, not the
    nine keys of the section (left out of the saved recipe while off); a key left out at its
    default shows the default, not "unset"."""
    from synergic.recipe import load_recipe
    from synergic.rundir import check_resume, identity_differences

    plain = load_recipe(write_recipe(tmp_path / "plain.yaml"))
    ema = load_recipe(write_recipe(tmp_path / "plain.yaml"), ["train.ema.decay=0.9"])
    assert identity_differences(plain, ema) == ["train.ema.decay (unset -> 0.9)"]
    assert identity_differences(ema, plain) == ["train.ema.decay (0.9 -> unset)"]
    both = load_recipe(write_recipe(tmp_path / "plain.yaml"),
                       ["train.ema=true", "train.ema.use_warmup=true", "train.tta=flips"])
    assert identity_differences(plain, both) == [
        'train.tta ("none" -> "flips")', "train.ema.decay (unset -> 0.9998)",
        "train.ema.use_warmup (unset -> true)",
    ]
    changed = ema.model_copy(update={"train": ema.train.model_copy(
        update={"ema": ema.train.ema.model_copy(update={"min_decay": 0.5})})})
    assert identity_differences(ema, changed) == ["train.ema.min_decay (0.0 -> 0.5)"]
    with pytest.raises(SynergicError) as caught:
        check_resume(plain, ema, run_dir=tmp_path, step=2)
    assert "in train.ema.decay (unset -> 0.9); the weights" in str(caught.value)


@pytest.mark.slow  # two gloo processes: tens of seconds on a busy machine
def test_two_processes_keep_one_average_that_reproduces_their_predictions(tmp_path):
    """Every rank keeps an average; without synchronised BatchNorm their running statistics
    drift apart, and rank 0's are broadcast before every evaluation and save, so the checkpoint,
    evaluated in one process, gives the predictions.csv the two processes wrote."""
    import os
    import subprocess
    import sys

    from synergic.experiment import prepare_data
    from synergic.serving import open_run
    from synergic.training.evaluation import evaluate

    recipe = write_recipe(tmp_path / "tiny.yaml", **EMA_RECIPE, **{
        "model.backbone.name": "test_resnet", "train.iterations": 4,
        "train.sync_batchnorm": False, "train.tta": "flips"})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SYNERGIC_DISABLE_PLUGINS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "synergic", "run", str(recipe), "--devices", "2", "--output",
         str(tmp_path / "run"), "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["selected"]["weights"] == "ema" and metrics["tta"] == "flips"
    run = open_run(tmp_path / "run", metrics["selected"]["checkpoint"])
    data = prepare_data(run.recipe, preprocessing=run.preprocessing)
    again = evaluate(run.model, data.test.images, data.test.labels, mean=run.preprocessing.mean,
                     std=run.preprocessing.std, tta="flips")
    with (tmp_path / "run" / "predictions.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    assert [row[0] for row in rows] == data.test.ids
    written = torch.tensor([[float(v) for v in row[1:]] for row in rows], dtype=torch.float64)
    torch.testing.assert_close(written, again.probabilities.double(), rtol=0, atol=1e-6)
