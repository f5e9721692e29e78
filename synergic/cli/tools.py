"""Commands around a trained run: ``explain`` (class activation maps) and ``export`` (ONNX,
torch.export)."""

from __future__ import annotations

from pathlib import Path

import click

from synergic.cli.options import checkpoint_option
from synergic.cli.output import OutputMode, console, output_options
from synergic.cli.runs import tta_option
from synergic.errors import SynergicError

__all__ = ["explain", "export"]

# Kept here, not imported from synergic.explain: that module imports torch, and `synergic --help`
# must not. tests/test_explain.py checks that the two lists agree.
EXPLAIN_METHODS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam",
                   "eigengradcam", "gradcam-elementwise", "scorecam")

neutral_set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a key that does not change what the run computes, e.g. train.device=cpu. "
    "Repeatable.",
)


def _components(values) -> list[int] | None:
    if not values or "all" in values:
        return None
    chosen = []
    for value in values:
        try:
            chosen.append(int(value))
        except ValueError:
            raise SynergicError(
                f"--component {value!r}: give a component number (1, 2, ...) or all"
            ) from None
    return chosen


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--method", type=click.Choice(EXPLAIN_METHODS), default="gradcam",
              show_default=True, help="The class activation map (pytorch-grad-cam's methods).")
@click.option("--component", "component", multiple=True, metavar="all|K",
              help="Write the maps of these components (1-based; repeatable); default: all. The "
              "aggregate's map is always written.")
@click.option("--target", metavar="CLASS",
              help="Explain this class (a name or an index) instead of the aggregate's prediction.")
@click.option("--layer", metavar="NAME",
              help="The backbone module to explain (a name from backbone.named_modules()); "
              "default: its last feature stage.")
@checkpoint_option
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the overlays and explanations.csv (default: RUN_DIR/explanations).")
@neutral_set_option
@output_options
def explain(run_dir: Path, images, method: str, component, target: str | None,
            layer: str | None, checkpoint: str, output: Path | None, overrides,
            output_mode: OutputMode) -> None:
    """Show where the run's components looked: a class activation map per image and component.

    Writes, per image, <image>_component<K>_<class>.png for each component and
    <image>_aggregate_<class>.png (the mean of the components' maps) over the preprocessed
    image, and explanations.csv (image, view, class, class_index, probability, method, layer,
    overlay). The class is the aggregate's prediction, or --target. Prints the output folder;
    --json prints {"run_dir", "checkpoint", "method", "output", "explanations": [...]}.
    """
    from synergic.explain import explain_images
    from synergic.rundir import resolve_checkpoint

    checkpoint = resolve_checkpoint(run_dir, checkpoint)
    folder = output or run_dir / "explanations"
    explanations = explain_images(
        run_dir, list(images), method=method, components=_components(component), target=target,
        layer=layer, checkpoint=checkpoint, output_dir=folder, overrides=overrides,
    )
    if output_mode.json:
        output_mode.emit_json({
            "run_dir": run_dir, "checkpoint": checkpoint, "method": method, "output": folder,
            "explanations": [
                {"image": e.image, "view": e.view, "class": e.class_name,
                 "probability": e.probability, "overlay": e.overlay}
                for e in explanations
            ],
        })
        return
    if output_mode.chatty:
        images_done = len({e.image for e in explanations})
        console(stderr=True).print(
            f"{len(explanations)} {method} maps of {images_done} images written "
            f"(explanations.csv lists them):", markup=False,
        )
    click.echo(str(folder))


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "format_", type=click.Choice(["onnx", "torch-export"]), default="onnx",
              show_default=True, help="onnx (run with onnxruntime) or torch-export (a .pt2 "
              "program for torch.export.load).")
@checkpoint_option
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="The model file (default: RUN_DIR/exported/<checkpoint>.onnx or .pt2); its "
              "sidecar is FILE.json.")
@click.option("--check-images", multiple=True, type=click.Path(path_type=Path), metavar="PATH",
              help="Images (files or folders) to check the export on; default: 4 generated "
              "images. Repeatable.")
@tta_option
@neutral_set_option
@output_options
def export(run_dir: Path, format_: str, checkpoint: str, output: Path | None, check_images,
           tta: str | None, overrides, output_mode: OutputMode) -> None:
    """Export the run's inference model (all components and the aggregator) for deployment.

    The model maps normalised images [B, 3, S, S] to class probabilities [B, K], any batch size;
    FILE.json holds the preprocessing (image_size, resample, decode_scale, mean, std) and the
    classes. Before it is kept, the export is run (onnxruntime, or the loaded torch.export
    program) on the check images and must match synergic predict's probabilities (with the
    same --tta) to 1e-4. --tta none exports the plain model (one view per image) even when the
    run evaluated with TTA. An existing FILE is replaced, and the command says so.
    Prints the model file; --json prints the sidecar's content plus "path" and "replaced".
    """
    import json

    from synergic.export import export_run
    from synergic.rundir import resolve_checkpoint

    checkpoint = resolve_checkpoint(run_dir, checkpoint)
    result = export_run(run_dir, output, format=format_, checkpoint=checkpoint,
                        check_images=list(check_images) or None, overrides=overrides, tta=tta)
    if output_mode.json:
        sidecar = json.loads(result.sidecar.read_text(encoding="utf-8"))
        output_mode.emit_json({**sidecar, "path": result.path, "replaced": result.replaced})
        return
    if output_mode.chatty:
        out = console(stderr=True)
        if result.replaced:
            out.print(f"replaced the earlier export at {result.path}", markup=False)
        tta = f" --tta {result.tta}" if result.tta != "none" else ""
        out.print(
            f"checked on {result.images} images against synergic predict{tta}: max abs "
            f"difference {result.max_abs_difference:.2e} (<= 1e-4); exporter: "
            f"{result.exporter}; sidecar: {result.sidecar}", markup=False,
        )
    click.echo(str(result.path))
