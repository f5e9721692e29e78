from __future__ import annotations

import os
from pathlib import Path

import pytest

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
