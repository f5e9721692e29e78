"""Every Python block of docs/library.md runs, and prints what the page says it prints.

The page is read as a reader reads it: its `python examples/example_data.py ...` commands write
the blood-cell images first, the recipe it shows is written where it says (shrunk to a tiny
model, 32 x 32 images and 2 iterations, so that the run takes seconds), then each Python block
runs on its own, in a folder of its own. A block followed by a ```text block must print exactly
that text.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "library.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)

#: What the recipe shown on the page is shrunk to before its Python block runs it.
TINY_RECIPE = {
    "data": {"image_size": 32, "cache": False},
    "model": {"backbone": {"name": "test_efficientnet", "pretrained": False}, "head": {"hidden": 16}},
    "train": {"iterations": 2, "batch_size": 4, "eval_every": 1, "eval_batch_size": 8},
}


def blocks(text: str) -> list[tuple[int, str, str, str | None]]:
    """``(line, language, code, printed)`` for each fenced block; ``printed`` is the ```text
    block that directly follows it (blank lines between allowed), else None."""
    found = [(text.count("\n", 0, m.start()) + 2, m.group(1), m.group(2), m.start(), m.end())
             for m in FENCE.finditer(text)]
    result = []
    for k, (line, language, code, _, end) in enumerate(found):
        following = found[k + 1] if k + 1 < len(found) else None
        printed = None
        if following and following[1] == "text" and not text[end:following[3]].strip():
            printed = following[2]
        result.append((line, language, code, printed))
    return result


PAGE_BLOCKS = blocks(PAGE.read_text(encoding="utf-8"))
PYTHON_BLOCKS = [(line, code, printed) for line, language, code, printed in PAGE_BLOCKS
                 if language == "python"]


def merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = merge(base.get(key) or {}, value) if isinstance(value, dict) else value
    return merged


def example_data(arguments: list[str], cwd: Path) -> None:
    subprocess.run([sys.executable, str(REPO / "examples" / "example_data.py"), *arguments],
                   cwd=cwd, check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder holding what the page's shell commands and recipe put in place."""
    folder = tmp_path_factory.mktemp("library-page")
    for _, language, code, _ in PAGE_BLOCKS:
        if language != "bash":
            continue
        for command in code.splitlines():
            if command.startswith("python examples/example_data.py"):
                example_data(shlex.split(command.split("#")[0])[2:], folder)
    shown = next(yaml.safe_load(code) for _, language, code, _ in PAGE_BLOCKS
                 if language == "yaml" and "name: blood-cells-folder" in code)
    recipe = merge(shown, TINY_RECIPE)
    example_data([recipe["data"]["root"], "--layout", "folder", "--train-per-class", "4",
                  "--test-per-class", "2", "--size", "32"], folder)
    (folder / "runs" / "blood-cells-folder" / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return folder


def test_the_page_reads_as_plain_markdown():
    """No snippet includes: on GitHub they show as the include line, not the code."""
    assert "--8<--" not in PAGE.read_text(encoding="utf-8")
    assert len(PYTHON_BLOCKS) >= 5
    assert any("image_folder(" in code for _, code, _ in PYTHON_BLOCKS)
    assert any("csv_dataset(" in code for _, code, _ in PYTHON_BLOCKS)


@pytest.mark.parametrize(
    "line, code, printed", PYTHON_BLOCKS, ids=[f"library.md:{line}" for line, _, _ in PYTHON_BLOCKS]
)
def test_python_block_runs(line, code, printed, workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("SYNERGIC_CACHE_DIR", str(workdir / "cache"))
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(code, f"{PAGE}:{line}", "exec"), {"__name__": "__main__"})
    if printed is not None:
        assert output.getvalue().strip() == printed.strip(), f"library.md:{line} printed otherwise"


def test_every_built_in_data_set_takes_root_by_position_and_the_rest_by_keyword(tmp_path):
    """The convention the page states, for each factory of synergic and of its two plugins."""
    import inspect

    from synergic import registry

    checked = []
    for entry in registry.datasets.entries():
        if entry.origin not in ("synergic", "medmnist"):
            continue
        parameters = list(inspect.signature(entry.factory).parameters.values())
        assert parameters[0].name == "root", entry.name
        assert parameters[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, entry.name
        rest = [p for p in parameters[1:] if p.kind is not inspect.Parameter.VAR_KEYWORD]
        assert rest[0].name == "split", entry.name
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in rest), entry.name
        checked.append(entry.name)
    assert {"csv", "folder", "isic2016", "synthetic_lesions"} <= set(checked)


def test_image_folder_takes_its_root_by_position(tmp_path):
    from PIL import Image

    from synergic.data.datasets.folder import image_folder

    for split, name in (("train", "a"), ("train", "b"), ("test", "a")):
        (tmp_path / split / name).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / split / name / "x.png")
    assert image_folder(tmp_path, split="train").ids == ["a/x.png", "b/x.png"]
    assert image_folder(root=tmp_path, split="test").labels == [0]
    with pytest.raises(TypeError):
        image_folder(tmp_path, "train")  # split is keyword-only, as every option
