from __future__ import annotations

import os

# As the synergic command does (synergic.cli.quiet_openmp_threads), before anything imports torch:
# idle OpenMP threads sleep instead of spinning, which on a busy 2-core machine made in-process
# training tests several times slower (docs/benchmarks.md, "CPU threads").
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The suite runs one pytest-xdist worker per core: one torch thread each fills the machine without
# oversubscribing it (a test that compares bytes compares runs made with the same thread count).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest
from tiny_recipe import TINY_RECIPE

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ISIC_SAMPLE = SHARED / "data" / "isic2016-sample"

# Tests must not depend on plugins installed in the environment unless they say so.
os.environ.setdefault("SYNERGIC_CACHE_DIR", str(REPO / ".pytest_cache" / "synergic-images"))


@pytest.fixture
def isic_sample() -> Path:
    if not (ISIC_SAMPLE / "ISBI2016_ISIC_Part3_Training_GroundTruth.csv").is_file():
        pytest.skip(f"real ISIC 2016 sample not available at {ISIC_SAMPLE}")
    return ISIC_SAMPLE




@pytest.fixture
def tiny_recipe(tmp_path) -> Path:
    """A recipe that trains SDL^2 end to end in about a second: generated data, a tiny timm model."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_RECIPE)
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for the runs in this process: results compared byte for byte need the
    same thread count, and a busy machine makes two spinning threads slower than one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
