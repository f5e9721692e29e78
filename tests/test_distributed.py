"""torch.distributed: a 2-process gloo run equals the 1-process run with the same global batch."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

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


@pytest.mark.slow
def test_two_gloo_processes_train_the_same_model_as_one(tiny_recipe, tmp_path):
    # test_convnext normalises with LayerNorm: per-sample, so splitting the batch over ranks
    # changes nothing but the order of floating-point sums (BatchNorm would see half-batches).
    common = [str(tiny_recipe), "--set", "model.backbone.name=test_convnext",
              "--set", "train.iterations=4", "--set", "train.checkpoint_every=0"]
    single = _synergic("run", *common, "--output", str(tmp_path / "one"), cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    double = _synergic("run", *common, "--devices", "2", "--output", str(tmp_path / "two"), cwd=tmp_path)
    assert double.returncode == 0, double.stderr[-3000:]

    one = torch.load(tmp_path / "one/checkpoints/last.pt", weights_only=True)["model"]
    two = torch.load(tmp_path / "two/checkpoints/last.pt", weights_only=True)["model"]
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)

    # The run directory is complete and written once (rank 0 only).
    for name in ("recipe.yaml", "metrics.json", "predictions.csv", "log.csv", "checkpoints/best.pt"):
        assert (tmp_path / "two" / name).is_file(), name
    steps = [int(row["step"]) for row in csv.DictReader((tmp_path / "two/log.csv").open())]
    assert steps == [1, 2, 3, 4]
    rows_one = (tmp_path / "one/predictions.csv").read_text().splitlines()
    rows_two = (tmp_path / "two/predictions.csv").read_text().splitlines()
    assert len(rows_two) == len(rows_one) == 17  # every test image once: no padding, no duplicates
    assert [r.split(",")[0] for r in rows_two] == [r.split(",")[0] for r in rows_one]
    m1 = json.loads((tmp_path / "one/metrics.json").read_text())["test"]
    m2 = json.loads((tmp_path / "two/metrics.json").read_text())["test"]
    for name in m1:
        assert m2[name] == pytest.approx(m1[name], abs=1e-3), name


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
