"""`synergic export`: the whole inference model as ONNX or a torch.export program, checked against
`synergic predict`."""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from tiny_recipe import write_recipe

from synergic.cli import cli
from synergic.errors import SynergicError

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, one_torch_thread) -> Path:
    folder = tmp_path_factory.mktemp("export")
    recipe = write_recipe(folder / "tiny.yaml", **{"train.eval_every": 0,
                                                   "train.checkpoint_every": 0})
    result = CliRunner().invoke(cli, ["run", str(recipe), "--output", str(folder / "run"), "-q"])
    assert result.exit_code == 0, result.output
    return folder / "run"


@pytest.fixture(scope="module")
def exported(trained_run) -> tuple[Path, str]:
    """The run exported to ONNX by the command, with its default exporter (dynamo)."""
    result = CliRunner().invoke(cli, ["export", str(trained_run)])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip()), result.stderr


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    generator = np.random.default_rng(1)
    paths = []
    for i, size in enumerate([(50, 40), (32, 32), (90, 120)]):
        paths.append(folder / f"image{i}.png")
        Image.fromarray(generator.integers(0, 256, (*size, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def exported_probabilities(model: Path, paths: list[Path]) -> np.ndarray:
    """What a deployment does: preprocess with the sidecar's settings, run onnxruntime."""
    from synergic.export import read_sidecar

    preprocessing, _ = read_sidecar(model.with_name(model.name + ".json"))
    inputs = preprocessing.normalize(torch.stack([preprocessing.load(p) for p in paths]))
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": inputs.numpy()})[0]


def test_export_writes_onnx_and_its_sidecar_and_says_what_it_checked(trained_run, exported):
    from synergic.serving import open_run

    model, printed = exported
    assert model == trained_run / "exported" / "last.onnx"  # the run reports last: no validation
    assert "checked on 4 images against synergic predict: max abs difference" in printed
    assert "exporter: dynamo" in printed
    assert stat.S_IMODE(model.stat().st_mode) == 0o666 & ~_umask()
    sidecar = json.loads(model.with_name("last.onnx.json").read_text())
    run = open_run(trained_run)
    assert sidecar["classes"] == run.classes == ["benign", "malignant"]
    stored = run.preprocessing.to_dict()
    for key in ("image_size", "resample", "decode_scale", "mean", "std"):
        assert sidecar[key] == stored[key], key
    assert sidecar["preprocessing_format"] == stored["format"]
    assert sidecar["input"]["shape"] == ["batch", 3, 32, 32]
    assert sidecar["output"]["shape"] == ["batch", 2]
    assert sidecar["format"] == "onnx" and sidecar["exporter"] == "dynamo"
    assert sidecar["aggregator"] == "sum_softmax" and sidecar["tta"] == "none"
    assert sidecar["check"]["images"] == 4 and sidecar["check"]["max_abs_difference"] <= 1e-4
    assert sorted(p.name for p in model.parent.iterdir()) == ["last.onnx", "last.onnx.json"]


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_matches_predict_at_any_batch_size(trained_run, exported, images, batch):
    from synergic.serving import predict_images

    _, predicted = predict_images(trained_run, images[:batch])
    ours = exported_probabilities(exported[0], images[:batch])
    assert ours.shape == (batch, 2)
    assert np.abs(ours - np.array([row for _, row in predicted])).max() <= 1e-4


@pytest.mark.shared_data
def test_onnx_matches_predict_on_the_isic_sample(trained_run, exported, isic_sample):
    from synergic.serving import predict_images

    test_images = sorted((isic_sample / "ISBI2016_ISIC_Part3_Test_Data").glob("*.jpg"))
    assert len(test_images) == 24  # full-size originals among them: decode_scale matters
    _, predicted = predict_images(trained_run, test_images)
    ours = exported_probabilities(exported[0], test_images)
    assert np.abs(ours - np.array([row for _, row in predicted])).max() <= 1e-4


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_torch_export_program_matches_predict(trained_run, images, tmp_path):
    """... and torch says nothing about the file's name: the temporary file that is checked
    before it takes the final name ends in .pt2 too."""
    from synergic.export import export_run
    from synergic.serving import predict_images

    records = _Records()
    loggers = [logging.getLogger(name) for name in ("torch", "torch.export")]  # no propagation
    for logger in loggers:
        logger.addHandler(records)
    try:
        result = export_run(trained_run, tmp_path / "sdl.pt2", format="torch-export",
                            check_images=images)
    finally:
        for logger in loggers:
            logger.removeHandler(records)
    assert not [m for m in records.messages if ".pt2" in m or ".tmp" in m], records.messages
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sdl.pt2", "sdl.pt2.json"]
    assert result.exporter == "torch.export" and result.images == 3
    assert json.loads(result.sidecar.read_text())["check"]["source"] == "3 image files"
    program = torch.export.load(str(result.path)).module()
    _, predicted = predict_images(trained_run, images)
    from synergic.export import read_sidecar

    preprocessing, classes = read_sidecar(result.sidecar)
    inputs = preprocessing.normalize(torch.stack([preprocessing.load(p) for p in images]))
    for batch in (1, 3):
        with torch.no_grad():
            ours = program(inputs[:batch])
        expected = torch.tensor([row for _, row in predicted[:batch]])
        assert ours.shape == (batch, 2) and (ours - expected).abs().max() <= 1e-4


def test_the_torchscript_onnx_exporter_works_too(trained_run, images, tmp_path):
    from synergic.export import export_run

    result = export_run(trained_run, tmp_path / "ts.onnx", onnx_exporter="torchscript")
    assert result.exporter == "torchscript" and result.max_abs_difference <= 1e-4
    assert exported_probabilities(result.path, images).shape == (3, 2)


def test_a_failed_check_leaves_nothing_behind(trained_run, tmp_path):
    from synergic.export import export_run

    target = tmp_path / "out" / "model.onnx"
    with pytest.raises(SynergicError, match=r"differ from predict's by .*: not written") as error:
        export_run(trained_run, target, onnx_exporter="torchscript", tolerance=-1.0)
    assert "\n" not in str(error.value)
    assert os.listdir(tmp_path / "out") == []


@pytest.mark.parametrize("package", ["onnx", "onnxruntime", "onnxscript"])
def test_a_missing_export_package_names_the_pip_command(package, trained_run, monkeypatch):
    from synergic.export import export_run

    monkeypatch.setitem(sys.modules, package, None)  # import raises ImportError
    with pytest.raises(SynergicError, match=rf'needs the {package} package: pip install '
                                            r'"synergic\[export\]"'):
        export_run(trained_run)


def test_read_sidecar_refuses_other_files(tmp_path):
    from synergic.export import read_sidecar

    with pytest.raises(SynergicError, match="not found: an export writes its sidecar"):
        read_sidecar(tmp_path / "model.onnx.json")
    (tmp_path / "other.json").write_text('{"classes": ["a", "b"]}')
    with pytest.raises(SynergicError, match="lacks image_size, resample"):
        read_sidecar(tmp_path / "other.json")


@pytest.mark.parametrize("format_, name", [("onnx", "m.txt"), ("onnx", "m.pt2"),
                                           ("torch-export", "m.onnx"), ("onnx", "m")])
def test_an_output_whose_suffix_does_not_fit_the_format_is_refused(trained_run, tmp_path,
                                                                   format_, name):
    from synergic.export import export_run

    suffix = {"onnx": ".onnx", "torch-export": ".pt2"}[format_]
    with pytest.raises(SynergicError) as caught:
        export_run(trained_run, tmp_path / name, format=format_)
    assert str(caught.value) == (
        f"--output {tmp_path / name}: {format_} exports are written to {suffix} files: "
        f"use --output {(tmp_path / name).with_suffix(suffix)}"
    )
    assert list(tmp_path.iterdir()) == []


def test_export_tta_is_inside_the_model_and_recorded_in_the_sidecar(trained_run, images,
                                                                    tmp_path):
    """tta="flips" (``--tta flips``) on a run trained without TTA: the exported model averages
    the flips as ``predict --tta flips`` does, and its sidecar says so."""
    from synergic.export import export_run
    from synergic.serving import predict_images

    result = export_run(trained_run, tmp_path / "flips.onnx", onnx_exporter="torchscript",
                        tta="flips")
    assert result.tta == "flips" and not result.replaced
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["tta"] == "flips" and sidecar["check"]["max_abs_difference"] <= 1e-4
    ours = torch.from_numpy(exported_probabilities(result.path, images))
    for tta, close in (("flips", True), ("none", False)):
        _, predicted = predict_images(trained_run, images, tta=tta)
        expected = torch.tensor([row for _, row in predicted])
        assert bool((ours - expected).abs().max() <= 1e-4) is close, tta
    with pytest.raises(SynergicError, match="unknown test-time augmentation 'd8': use one of"):
        export_run(trained_run, tmp_path / "d8.onnx", tta="d8")


def test_exporting_again_to_the_same_file_says_it_replaced_it(trained_run, tmp_path,
                                                              monkeypatch):
    import synergic.export
    from synergic.export import export_run

    target = tmp_path / "m.onnx"
    assert not export_run(trained_run, target, onnx_exporter="torchscript").replaced
    again = export_run(trained_run, target, onnx_exporter="torchscript")
    assert again.replaced and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx",
                                                                          "m.onnx.json"]
    # The command says so in one line (the export itself is the one above).
    monkeypatch.setattr(synergic.export, "export_run", lambda *args, **kwargs: again)
    printed = CliRunner().invoke(cli, ["export", str(trained_run), "--output", str(target)])
    assert printed.exit_code == 0, printed.output
    assert printed.stderr.splitlines()[0] == f"replaced the earlier export at {target}"
    assert printed.stdout == f"{target}\n"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
