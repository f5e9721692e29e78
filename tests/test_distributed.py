"""torch.distributed: a 2-process gloo run equals the 1-process run with the same global batch."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from synergic.training.distributed import Distributed


def test_shards_cover_every_item_once():
    for total in (0, 1, 7, 32):
        for world in (1, 2, 3, 4):
            covered = []
            for rank in range(world):
                start, stop = Distributed(rank, world).shard(total)
                covered.extend(range(start, stop))
            assert covered == list(range(total))


def _synergic(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SYNERGIC_DISABLE_PLUGINS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "synergic", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=300,
    )


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _numbers(rows, columns):
    return torch.tensor([[float(row[c]) for c in columns] for row in rows], dtype=torch.float64)


@pytest.mark.slow
def test_two_gloo_processes_with_batchnorm_train_and_predict_what_one_does(tiny_recipe, tmp_path):
    # test_resnet normalises with BatchNorm: with train.sync_batchnorm auto the two processes
    # normalise over the global batch, as one process does (without it the losses differ at 1e-2).
    common = [str(tiny_recipe), "--set", "model.backbone.name=test_resnet",
              "--set", "train.iterations=4", "--set", "train.checkpoint_every=0"]
    single = _synergic("run", *common, "--output", str(tmp_path / "one"), cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    double = _synergic("run", *common, "--devices", "2", "--output", str(tmp_path / "two"),
                       cwd=tmp_path)
    assert double.returncode == 0, double.stderr[-3000:]

    log_one, log_two = _rows(tmp_path / "one/log.csv"), _rows(tmp_path / "two/log.csv")
    assert [int(r["step"]) for r in log_two] == [int(r["step"]) for r in log_one] == [1, 2, 3, 4]
    losses = [c for c in log_one[0] if c == "loss" or c.startswith(("ce_", "synergic_"))]
    assert losses == ["loss", "ce_1", "ce_2", "synergic_12"]
    torch.testing.assert_close(
        _numbers(log_two, losses), _numbers(log_one, losses), rtol=0, atol=1e-4
    )

    pred_one = _rows(tmp_path / "one/predictions.csv")
    pred_two = _rows(tmp_path / "two/predictions.csv")
    assert len(pred_two) == len(pred_one) == 16  # every test image once: no padding, no duplicates
    assert [r["image"] for r in pred_two] == [r["image"] for r in pred_one]
    classes = [c for c in pred_one[0] if c != "image"]
    torch.testing.assert_close(
        _numbers(pred_two, classes), _numbers(pred_one, classes), rtol=0, atol=1e-4
    )

    # The weights and the BatchNorm running statistics, too.
    one = torch.load(tmp_path / "one/checkpoints/last.pt", weights_only=True)["model"]
    two = torch.load(tmp_path / "two/checkpoints/last.pt", weights_only=True)["model"]
    assert one.keys() == two.keys() and any(k.endswith("running_var") for k in one)
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
    # The run directory is complete and written once (rank 0 only).
    for name in ("recipe.yaml", "metrics.json", "checkpoints/best.pt"):
        assert (tmp_path / "two" / name).is_file(), name


def test_the_checkpoint_of_two_processes_reproduces_their_predictions(tiny_recipe, tmp_path):
    # Without synchronised BatchNorm each rank's running statistics drift apart; rank 0's are
    # broadcast before every evaluation, so the selected checkpoint, evaluated in one process,
    # gives predictions.csv (rank 1's own statistics would differ by about 2e-4 here).
    from synergic.experiment import prepare_data
    from synergic.serving import open_run
    from synergic.training.evaluation import evaluate

    run_dir = tmp_path / "run"
    result = _synergic("run", str(tiny_recipe), "--set", "model.backbone.name=test_resnet",
                       "--set", "train.iterations=4", "--set", "train.sync_batchnorm=false",
                       "--devices", "2", "--output", str(run_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    selected = json.loads((run_dir / "metrics.json").read_text())["selected"]["checkpoint"]
    run = open_run(run_dir, selected)
    data = prepare_data(run.recipe, preprocessing=run.preprocessing)
    again = evaluate(run.model, data.test.images, data.test.labels, mean=run.preprocessing.mean,
                     std=run.preprocessing.std)
    rows = _rows(run_dir / "predictions.csv")
    assert [r["image"] for r in rows] == data.test.ids
    torch.testing.assert_close(
        _numbers(rows, run.classes), again.probabilities.double(), rtol=0, atol=1e-6
    )


def test_a_user_error_under_two_devices_is_one_line_before_processes_start(tiny_recipe, tmp_path):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "recipe.yaml").write_text("name: another run\n")
    result = _synergic("run", str(tiny_recipe), "--devices", "2", "--output", str(occupied),
                       cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: output directory {occupied} already holds another run: use --resume to continue "
        "it, --overwrite to replace it, or another --output"
    ]
    assert [p.name for p in occupied.iterdir()] == ["recipe.yaml"]


def test_an_error_inside_the_processes_is_shown_once_without_tracebacks(tiny_recipe, tmp_path):
    # A broken image is found only while decoding, in the processes: rank 0 fails, rank 1 loses
    # its peer; the launcher shows rank 0's line once.
    from PIL import Image

    for split, count in (("train", 4), ("test", 2)):
        for name in ("melanoma", "nevus"):
            folder = tmp_path / "lesions" / split / name
            folder.mkdir(parents=True)
            for k in range(count):
                colour = (40 * k, 90, 200 if name == "nevus" else 20)
                Image.new("RGB", (40, 40), colour).save(folder / f"{k}.png")
    broken = tmp_path / "lesions/test/nevus/broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 10)
    result = _synergic("run", str(tiny_recipe), "--set", "data.dataset=folder",
                       "--set", f"data.root={tmp_path / 'lesions'}", "--set", "data.options={}",
                       "--devices", "2", "--output", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error") or "Error" in line]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    assert str(broken) in errors[0]
    assert result.stderr.rstrip().endswith(errors[0])
    assert "preparing data" in result.stderr  # it came from the processes, not the launcher
    for noise in ("Traceback", "[rank", "ChildFailedError", "torch.distributed"):
        assert noise not in result.stderr, noise


@pytest.mark.slow
def test_a_checkpoint_of_two_processes_resumes_in_one(tiny_recipe, tmp_path):
    common = [str(tiny_recipe), "--set", "model.backbone.name=test_convnext", "--output", str(tmp_path / "run")]
    first = _synergic("run", *common, "--set", "train.iterations=2", "--devices", "2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = _synergic("run", *common, "--set", "train.iterations=4", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    steps = [int(row["step"]) for row in csv.DictReader((tmp_path / "run/log.csv").open())]
    assert steps == [1, 2, 3, 4]


def test_the_global_batch_must_divide_among_processes():
    from synergic.errors import SynergicError
    from synergic.training.distributed import check_batch

    check_batch(8, Distributed(0, 2))
    with pytest.raises(SynergicError, match="multiple of 3"):
        check_batch(8, Distributed(0, 3))


def test_a_user_error_of_the_devices_is_checked_before_launching():
    from synergic.errors import SynergicError
    from synergic.training.distributed import check_processes

    check_processes(1, "cuda:1")
    check_processes(4, "cpu")
    with pytest.raises(SynergicError, match="train.device is cuda:1, one GPU"):
        check_processes(2, "cuda:1")
    if not torch.cuda.is_available():
        with pytest.raises(SynergicError, match="no CUDA GPU"):
            check_processes(2, "cuda")
        check_processes(2, "auto")  # gloo processes on the CPU


# -- BatchNorm over the global batch ----------------------------------------------------------


@pytest.mark.parametrize("setting", [True, False, "auto"])
@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_sync_batchnorm_setting(setting, world, norm):
    from synergic.training.distributed import wants_sync_batchnorm

    norm_layer = nn.BatchNorm2d(4) if norm == "batch" else nn.GroupNorm(1, 4)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), norm_layer)
    expected = world > 1 and (setting is True or (setting == "auto" and norm == "batch"))
    assert wants_sync_batchnorm(setting, model, Distributed(0, world)) is expected


def test_sync_batchnorm_setting_rejects_other_values():
    from synergic.training.distributed import wants_sync_batchnorm

    with pytest.raises(ValueError, match="'yes'"):
        wants_sync_batchnorm("yes", nn.BatchNorm2d(3), Distributed(0, 2))


def test_the_recipe_key_takes_auto_true_or_false():
    from synergic.recipe.schema import TrainConfig

    assert TrainConfig().sync_batchnorm == "auto"
    assert TrainConfig(sync_batchnorm=True).sync_batchnorm is True
    assert TrainConfig(sync_batchnorm=False).sync_batchnorm is False
    with pytest.raises(ValueError):
        TrainConfig(sync_batchnorm="sometimes")


def test_conversion_keeps_parameters_buffers_and_activations():
    import timm

    from synergic.training.distributed import (
        AllReduceBatchNorm, AllReduceBatchNormAct, convert_sync_batchnorm,
    )

    model = timm.create_model("test_efficientnet", num_classes=2)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_()  # not the initial values, so a lost buffer shows
    model.eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(images)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted = convert_sync_batchnorm(model)
    kinds = {type(m) for m in converted.modules()}
    assert AllReduceBatchNormAct in kinds and nn.BatchNorm2d not in kinds - {AllReduceBatchNorm}
    assert not any(type(m).__name__ == "BatchNormAct2d" for m in converted.modules())
    after = converted.state_dict()
    assert after.keys() == before.keys()
    for key in before:
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0, msg=key)
    assert not converted.training
    with torch.no_grad():  # one process, or evaluation: plain BatchNorm with its activation
        torch.testing.assert_close(converted(images), expected)


def _batchnorm_worker(rank: int, world: int, port: int, name: str, results) -> None:
    import copy

    import timm
    import torch.distributed as dist

    from synergic.training.distributed import convert_sync_batchnorm

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        whole = timm.create_model(name, num_classes=2)  # one process holding the global batch
        images = torch.randn(8, 3, 32, 32)
        model = nn.parallel.DistributedDataParallel(convert_sync_batchnorm(copy.deepcopy(whole)))
        share = slice(rank * 8 // world, (rank + 1) * 8 // world)
        for _ in range(2):  # twice: the running statistics move, and are used the second time
            reference = whole(images)
            reference.logsumexp(1).mean().backward()
            outputs = model(images[share])
            outputs.logsumexp(1).mean().backward()
        reference = reference.detach()[share]
        grads = {n: p.grad for n, p in model.module.named_parameters()}
        results.put((rank, {
            "output": (outputs.detach() - reference).abs().max().item(),
            # DDP averages the ranks' gradients of their mean losses: the whole batch's gradient.
            # (relative to the largest gradient: some biases' true gradients are 0 +- rounding)
            "gradient": max((grads[n] - p.grad).abs().max().item()
                            for n, p in whole.named_parameters())
            / max(p.grad.abs().max().item() for p in whole.parameters()),
            "buffers": max((b.float() - w.float()).abs().max().item()
                           for b, w in zip(model.module.buffers(), whole.buffers())),
        }))
    finally:
        dist.destroy_process_group()


# test_resnet has torch's BatchNorm2d, test_efficientnet timm's BatchNormAct2d.
@pytest.mark.parametrize("name", ["test_resnet", "test_efficientnet"])
def test_gloo_processes_normalise_over_the_global_batch(name):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_batchnorm_worker, args=(rank, 2, port, name, results))
                 for rank in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0, 0]
    found = dict(results.get(timeout=5) for _ in processes)
    for rank, differences in found.items():
        assert differences["output"] < 1e-4, (rank, differences)
        assert differences["gradient"] < 1e-4, (rank, differences)
        assert differences["buffers"] < 1e-5, (rank, differences)
