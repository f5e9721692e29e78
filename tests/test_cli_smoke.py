from __future__ import annotations

import json

from click.testing import CliRunner

from synergic.cli import cli


def test_run_writes_the_run_directory(tiny_recipe, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(tiny_recipe), "--output", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("recipe.yaml", "metrics.json", "predictions.csv", "log.csv", "roc.png", "pr.png",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"test", "test_components", "validation"}
    assert len(metrics["test_components"]) == 2
    lines = (out / "predictions.csv").read_text().splitlines()
    assert lines[0] == "image,benign,malignant" and len(lines) == 17
