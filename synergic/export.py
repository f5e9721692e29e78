"""A trained run as one file to deploy: ONNX (run by onnxruntime) or a ``torch.export`` program.

The exported model is the whole inference model of SDL^n: every component and the run's
aggregator (:class:`InferenceModel`), mapping normalised images ``[B, 3, S, S]`` (float32) to
class probabilities ``[B, K]``, with a dynamic batch size. What turns a file into that input (the
run's :class:`~synergic.data.preprocess.Preprocessing`) and the class names go into a JSON sidecar
``FILE.json``; :func:`read_sidecar` reads them back.

Which library does what:

* ``--format onnx``: :func:`torch.onnx.export` with the dynamo exporter (``torch.export`` +
  onnxscript), which exports timm's ResNets, EfficientNets and ViTs; the TorchScript exporter is
  used only when the dynamo exporter fails (it cannot export a ViT: no ONNX op for its antialiased
  bicubic position-embedding resize). The file is checked with onnxruntime.
* ``--format torch-export``: :func:`torch.export.export` and :func:`torch.export.save` (``.pt2``);
  checked with the program :func:`torch.export.load` reads back.

Each export is checked before it is kept: on the same images, the exported model's probabilities
must match those of ``synergic predict`` (the run's preprocessing, model and aggregator, in fp32
on the CPU) to ``tolerance`` (1e-4), at batch size 1 and at the full batch. Nothing is left under
the final names when the export or the check fails.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from synergic.errors import SynergicError, describe_error

FORMATS = {"onnx": ".onnx", "torch-export": ".pt2"}
"""``--format`` names and their file suffixes."""

EXPORT_INSTALL = 'pip install "synergic[export]"'

DEFAULT_TOLERANCE = 1e-4
"""Largest absolute difference of a probability allowed between the export and ``predict``."""


class InferenceModel(nn.Module):
    """SDL^n at test time: every component on the same images, then the aggregator (eq. 6).

    ``forward(images)``: float ``[B, 3, S, S]``, normalised with the run's mean/std ->
    float32 class probabilities ``[B, K]``. ``tta`` (``none``, ``flips``, ``d4``): each
    component's softmax averaged over those views first, as ``predict`` does
    (:func:`synergic.tta.view_averaged_logits`).
    """

    def __init__(
        self, components: Sequence[nn.Module],
        aggregator: Callable[[list[torch.Tensor]], torch.Tensor], tta: str = "none",
    ) -> None:
        super().__init__()
        self.components = nn.ModuleList(components)
        self.aggregator = aggregator
        self.tta = tta

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from synergic.tta import view_averaged_logits

        return self.aggregator([
            view_averaged_logits(lambda x, c=component: c(x).logits, images, self.tta)
            for component in self.components
        ])


@dataclass
class ExportResult:
    """What :func:`export_run` wrote and measured."""

    path: Path
    """The model file."""
    sidecar: Path
    """``path`` + ``.json``: preprocessing, classes, and the check."""
    max_abs_difference: float
    """Largest absolute difference between the export's and ``predict``'s probabilities."""
    images: int
    """How many images the check used."""
    exporter: str
    """``dynamo`` or ``torchscript`` (ONNX), ``torch.export`` (torch-export)."""
    tta: str = "none"
    """The test-time augmentation inside the exported model (:data:`synergic.tta.TTA_MODES`)."""
    replaced: bool = False
    """Whether ``path`` held a file before (an earlier export), which this one replaced."""


def require_export_packages(format: str, exporter: str = "dynamo") -> None:
    """Raise a one-line :class:`SynergicError` with the pip command when a package that
    ``format`` needs is missing (ONNX: onnx, onnxruntime, and onnxscript for the dynamo
    exporter)."""
    if format != "onnx":
        return
    needed = ["onnx", "onnxruntime"] + (["onnxscript"] if exporter == "dynamo" else [])
    for name in needed:
        try:
            __import__(name)
        except ImportError:
            raise SynergicError(
                f"ONNX export needs the {name} package: {EXPORT_INSTALL}"
            ) from None


def export_run(
    run_dir: Path,
    output: Path | None = None,
    *,
    format: str = "onnx",
    checkpoint: str = "last",
    check_images: Sequence[Path] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    onnx_exporter: str = "dynamo",
    overrides: Sequence[str] = (),
    tta: str | None = None,
) -> ExportResult:
    """Export a run's inference model and its sidecar, checked against ``predict``.

    Args:
        run_dir: a run directory (``synergic run``).
        output: the model file, ending in ``.onnx`` (or ``.pt2``); default
            ``RUN_DIR/exported/<checkpoint>.onnx`` (or ``.pt2``). An existing file is replaced
            (``ExportResult.replaced``).
        format: ``onnx`` or ``torch-export`` (:data:`FORMATS`).
        checkpoint: ``last`` or ``best``.
        check_images: image files or folders to check with; default: 4 generated images (random
            pixels, seeded) written as PNG and read back through the run's preprocessing.
        tolerance: largest absolute difference of a probability allowed.
        onnx_exporter: ``dynamo`` (falls back to ``torchscript`` with a warning when it fails)
            or ``torchscript``.
        overrides: ``KEY=VALUE`` for result-neutral recipe keys, as for ``predict``.
        tta: test-time augmentation inside the exported model (``none``, ``flips``, ``d4``:
            each component's softmax averaged over the views, as ``predict --tta``); default:
            the run's ``train.tta``. Recorded in the sidecar (``tta``).

    Raises:
        SynergicError: as :func:`synergic.serving.open_run`; a missing package (with the pip
            command); an unknown format or TTA mode; an ``output`` whose suffix is not the
            format's; a model the exporter cannot export; a check that fails.
    """
    from synergic import registry
    from synergic.serving import open_run

    if format not in FORMATS:
        raise SynergicError(f"unknown export format {format!r}: use one of {', '.join(FORMATS)}")
    if onnx_exporter not in ("dynamo", "torchscript"):
        raise SynergicError(f"unknown ONNX exporter {onnx_exporter!r}: use dynamo or torchscript")
    suffix = FORMATS[format]
    if output is not None and Path(output).suffix != suffix:
        # onnxruntime reads any name, but torch.export.load wants .pt2, and a wrong suffix
        # misleads whoever deploys the file.
        raise SynergicError(
            f"--output {output}: {format} exports are written to {suffix} files: use "
            f"--output {Path(output).with_suffix(suffix)}"
        )
    if tta is not None:
        from synergic.tta import TTA_MODES

        if tta not in TTA_MODES:
            raise SynergicError(f"unknown test-time augmentation {tta!r}: use one of "
                                f"{', '.join(TTA_MODES)}")
    require_export_packages(format, onnx_exporter)
    run_dir = Path(run_dir)
    run = open_run(run_dir, checkpoint, overrides=overrides)
    size = run.preprocessing.image_size
    output = Path(output) if output is not None else (
        run_dir / "exported" / f"{checkpoint}{suffix}"
    )
    tta = run.recipe.train.tta if tta is None else tta  # predict's default
    model = InferenceModel(
        run.model.components, registry.aggregators.get(run.recipe.model.aggregator), tta
    ).eval()
    pixels, files = _check_pixels(run.preprocessing, check_images)
    inputs = run.preprocessing.normalize(pixels)
    reference = _predict_probabilities(run, pixels, tta)

    output.parent.mkdir(parents=True, exist_ok=True)
    replaced = output.exists()
    # The temporary file ends in the final suffix: torch.export.save and load warn otherwise.
    fd, name = tempfile.mkstemp(
        prefix=f".{output.stem}.", suffix=f".tmp{suffix}", dir=output.parent
    )
    os.close(fd)
    temporary = Path(name)
    umask = os.umask(0o022)
    os.umask(umask)
    temporary.chmod(0o666 & ~umask)  # mkstemp's 0600 -> what a plain open() would give
    try:
        example = torch.zeros(2, 3, size, size)  # batch 2: a batch of 1 would be specialised
        if format == "onnx":
            exporter = _export_onnx(model, example, temporary, onnx_exporter)
            run_exported = _onnxruntime_runner(temporary)
        else:
            exporter = "torch.export"
            _export_program(model, example, temporary)
            run_exported = _program_runner(temporary)
        difference = max(
            float((run_exported(inputs) - reference).abs().max()),
            float((run_exported(inputs[:1]) - reference[:1]).abs().max()),
        )
        if not difference <= tolerance:  # (NaN fails too)
            raise SynergicError(
                f"the exported model's probabilities differ from predict's by {difference:.3g} "
                f"(> {tolerance:g}) on {len(inputs)} images: not written; report this with "
                f"the run's backbone ({run.recipe.model.backbone.name})"
            )
        sidecar = sidecar_contents(
            run, format=format, model_file=output.name, exporter=exporter, checkpoint=checkpoint,
            tta=tta, check={"images": len(inputs), "source": files,
                            "max_abs_difference": difference, "tolerance": tolerance},
        )
        from synergic.rundir import write_text_atomically

        sidecar_path = output.with_name(output.name + ".json")
        os.replace(temporary, output)
        write_text_atomically(sidecar_path, json.dumps(sidecar, indent=2) + "\n")
    finally:
        temporary.unlink(missing_ok=True)
    return ExportResult(output, sidecar_path, difference, len(inputs), exporter, tta, replaced)


def sidecar_contents(
    run, *, format: str, model_file: str, exporter: str, checkpoint: str, check: dict[str, Any],
    tta: str | None = None,
) -> dict[str, Any]:
    """The JSON sidecar of an export: how to make the input, what the output means, where it
    came from. The preprocessing keys are :meth:`Preprocessing.to_dict
    <synergic.data.preprocess.Preprocessing.to_dict>`'s (``format`` as ``preprocessing_format``);
    ``tta`` is the test-time augmentation inside the model (default: the run's ``train.tta``)."""
    from synergic import __version__

    preprocessing = run.preprocessing.to_dict()
    size = preprocessing["image_size"]
    return {
        "format": format,
        "model": model_file,
        "exporter": exporter,
        "input": {"name": "images", "shape": ["batch", 3, size, size], "dtype": "float32",
                  "meaning": "RGB, channels first, (pixel / 255 - mean) / std"},
        "output": {"name": "probabilities", "shape": ["batch", len(run.classes)],
                   "dtype": "float32", "meaning": f"aggregate ({run.recipe.model.aggregator}) "
                   "of the components' outputs; columns in the order of classes"},
        "classes": list(run.classes),
        "image_size": size,
        "resample": preprocessing["resample"],
        "decode_scale": preprocessing["decode_scale"],
        "mean": preprocessing["mean"],
        "std": preprocessing["std"],
        "preprocessing_format": preprocessing["format"],
        "aggregator": run.recipe.model.aggregator,
        "tta": run.recipe.train.tta if tta is None else tta,
        "components": run.model.num_components,
        "backbone": run.recipe.model.backbone.name,
        "run_dir": str(run.checkpoint.parent.parent),
        "checkpoint": checkpoint,
        "synergic_version": __version__,
        "torch_version": torch.__version__,
        "check": check,
    }


def read_sidecar(path: Path):
    """``(preprocessing, classes)`` from an export's sidecar (``FILE.json``): the
    :class:`~synergic.data.preprocess.Preprocessing` that makes the model's input from a file,
    and the class names of its output columns.

    Raises:
        SynergicError: the file is missing, not JSON, or lacks a preprocessing key.
    """
    from synergic.data.preprocess import Preprocessing

    path = Path(path)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SynergicError(f"{path} not found: an export writes its sidecar beside the model "
                            "(FILE.json)") from None
    except (OSError, ValueError) as error:
        raise SynergicError(
            f"{path} cannot be read as JSON ({error}): export the run again"
        ) from None
    keys = ("image_size", "resample", "decode_scale", "mean", "std")
    missing = [k for k in (*keys, "preprocessing_format", "classes") if k not in values]
    if missing:
        raise SynergicError(f"{path} lacks {', '.join(missing)}: it was not written by "
                            "synergic export")
    stored = {k: values[k] for k in keys} | {"format": values["preprocessing_format"]}
    return Preprocessing.from_dict(stored, source=str(path)), list(values["classes"])


# -- the pieces ----------------------------------------------------------------------------------


def _check_pixels(preprocessing, paths: Sequence[Path] | None) -> tuple[torch.Tensor, str]:
    """uint8 ``[N, 3, S, S]`` to check with, read through ``preprocessing``; and where from."""
    from synergic.serving import image_files

    if paths:
        files = image_files(paths)
        return torch.stack([preprocessing.load(f) for f in files]), f"{len(files)} image files"
    # Generated images take the same path as files: written as PNG, read back by load().
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    size = preprocessing.image_size
    with tempfile.TemporaryDirectory() as folder:
        loaded = []
        for i in range(4):
            noise = torch.randint(0, 256, (size, size, 3), generator=generator, dtype=torch.uint8)
            path = Path(folder) / f"generated-{i}.png"
            Image.fromarray(noise.numpy()).save(path)
            loaded.append(preprocessing.load(path))
    return torch.stack(loaded), "4 generated images"


def _predict_probabilities(run, pixels: torch.Tensor, tta: str) -> torch.Tensor:
    """What ``synergic predict --tta TTA`` computes for ``pixels`` (serving.predict_images), in
    fp32 on the CPU: the exported model's precision."""
    from synergic import registry
    from synergic.training.evaluation import predict

    logits = predict(
        run.model, pixels, mean=run.preprocessing.mean, std=run.preprocessing.std,
        batch_size=run.recipe.train.eval_batch_size, device="cpu", precision="fp32",
        channels_last=run.recipe.train.channels_last, tta=tta,
    )
    return registry.aggregators.get(run.recipe.model.aggregator)(logits)


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, exporter: str) -> str:
    """Write ``model`` as ONNX to ``path`` with a dynamic batch; returns the exporter used."""
    if exporter == "dynamo":
        try:
            _onnx_dynamo(model, example, path)
            return "dynamo"
        except Exception as error:
            warnings.warn(
                f"the dynamo ONNX exporter failed ({describe_error(error)}); using the "
                "TorchScript exporter", stacklevel=3,
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecation notice
            torch.onnx.export(
                model, (example,), str(path), dynamo=False, input_names=["images"],
                output_names=["probabilities"],
                dynamic_axes={"images": {0: "batch"}, "probabilities": {0: "batch"}},
            )
    except Exception as error:
        raise SynergicError(
            f"ONNX export failed ({describe_error(error)}): try --format torch-export"
        ) from None
    return "torchscript"


def _onnx_dynamo(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    # The exporter prints its progress and warns about what it decomposes: not for users.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), dynamo=True, input_names=["images"],
            output_names=["probabilities"], dynamic_shapes={"images": {0: batch}},
            external_data=False, verbose=False,
        )


def _onnxruntime_runner(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda images: torch.from_numpy(session.run(None, {name: images.numpy()})[0])


def _export_program(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(model, (example,), dynamic_shapes={"images": {0: batch}})
        torch.export.save(program, str(path))
    except Exception as error:
        raise SynergicError(
            f"torch.export failed ({describe_error(error)}): try --format onnx"
        ) from None


def _program_runner(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    module = torch.export.load(str(path)).module()

    def run(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(images)

    return run
