"""Small generated MedMNIST-format files for the tests (no network, no real data)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
try:
    importlib.import_module("synergic_medmnist")
except ImportError:  # not pip-installed: test the checkout
    sys.path.insert(0, str(PLUGIN_ROOT))

SPLIT_SIZES = {"train": 20, "val": 6, "test": 8}


def make_arrays(
    *, rgb: bool, size: int = 28, num_classes: int = 3, seed: int = 0
) -> dict[str, np.ndarray]:
    """MedMNIST-shaped arrays: every class present in every split, labels ``[N, 1]``."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in SPLIT_SIZES.items():
        shape = (count, size, size, 3) if rgb else (count, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        labels = np.arange(count) % num_classes
        arrays[f"{split}_labels"] = labels.reshape(-1, 1).astype(np.uint8)
    return arrays


@pytest.fixture
def write_npz():
    """``write_npz(path, arrays=None, *, rgb, size, num_classes, compressed) -> (path, arrays)``."""

    def write(
        path: Path,
        arrays: dict[str, np.ndarray] | None = None,
        *,
        rgb: bool = False,
        size: int = 28,
        num_classes: int = 3,
        compressed: bool = True,
    ) -> tuple[Path, dict[str, np.ndarray]]:
        if arrays is None:
            arrays = make_arrays(rgb=rgb, size=size, num_classes=num_classes)
        path.parent.mkdir(parents=True, exist_ok=True)
        (np.savez_compressed if compressed else np.savez)(path, **arrays)
        return path, arrays

    return write
