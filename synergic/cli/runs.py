"""Commands on one run: ``run``, ``resume``, ``eval``, ``predict``."""

from __future__ import annotations

import time
from pathlib import Path

import click

from synergic.cli.options import (
    checkpoint_option, default_run_dir, load_checked_recipe, set_option,
)
from synergic.cli.output import (
    OutputMode, comparison_line, console, metrics_table, output_options,
)
from synergic.cli.progress import TrainingProgress
from synergic.errors import SynergicError

__all__ = ["run", "resume", "eval_command", "predict"]


@click.command()
@click.argument("recipe")
@set_option
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory (default: runs/<recipe name>/<timestamp>).")
@click.option("--resume", is_flag=True, help="Continue the run in --output from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace the run in --output.")
@click.option("--devices", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train with this many processes through torch.distributed (one per GPU; "
              "gloo processes on a CPU-only machine). Same as torchrun --nproc-per-node N.")
@output_options
def run(recipe: str, overrides, output: Path | None, resume: bool, overwrite: bool,
        devices: int, output_mode: OutputMode) -> None:
    """Train and evaluate RECIPE (a YAML file or a built-in recipe name).

    Prints the test metrics of the aggregate and of each component; --quiet prints only the run
    directory, --json prints metrics.json's content plus "run_dir".
    """
    from synergic.training import distributed

    debug = bool((click.get_current_context().find_root().obj or {}).get("debug"))
    # A process started by --devices N reports its error to the launcher, which shows it once.
    with distributed.errors_reported_to_launcher(enabled=not debug):
        loaded = load_checked_recipe(recipe, overrides)
        if resume and output is None:
            raise SynergicError("--resume needs --output: the run directory to continue")
        if devices > 1 and not distributed.launched_by_torchrun():
            output = output or default_run_dir(loaded.name)
            arguments = ["--debug"] * debug + ["run", recipe, *(f"--set={o}" for o in overrides)]
            arguments += [f"--output={output}"] + ["--resume"] * resume + ["--overwrite"] * overwrite
            arguments += ["--quiet"] * output_mode.quiet + ["--json"] * output_mode.json
            _launch_distributed(devices, arguments, loaded, output, resume=resume, overwrite=overwrite)
            return
        if distributed.launched_by_torchrun():
            info = distributed.init_distributed(loaded.train.device)
            # Every rank must write to (and rank 0 create) the same directory.
            output = distributed.broadcast_object(output or default_run_dir(loaded.name))
            if not info.is_main:
                from synergic.experiment import run as run_experiment

                run_experiment(loaded, output, resume=resume, overwrite=overwrite)
                return
        _run(loaded, output or default_run_dir(loaded.name), resume=resume, overwrite=overwrite,
             output_mode=output_mode, rerun=recipe)


def _launch_distributed(devices: int, arguments: list[str], recipe, output: Path, *,
                        resume: bool, overwrite: bool) -> None:
    """Check everything a user can get wrong here, once, then run ``synergic ARGUMENTS`` in
    ``devices`` processes (torchrun); a failure is raised as one :class:`SynergicError`."""
    import warnings

    from synergic.experiment import run as run_experiment
    from synergic.training import distributed

    distributed.check_batch(recipe.train.batch_size, distributed.Distributed(0, devices))
    distributed.check_processes(devices, recipe.train.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rank 0 gives the run's warnings again
        run_experiment(recipe, output, resume=resume, overwrite=overwrite, check_only=True)
    distributed.launch(devices, arguments)


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@set_option
@output_options
def resume(run_dir: Path, overrides, output_mode: OutputMode) -> None:
    """Continue the run in RUN_DIR from its last checkpoint (e.g. --set train.iterations=...).

    Prints what `synergic run` prints; --quiet and --json as there.
    """
    if not (run_dir / "recipe.yaml").is_file():
        raise SynergicError(
            f"nothing to resume: {run_dir} holds no synergic run (no recipe.yaml); "
            "start one with: synergic run RECIPE --output " + str(run_dir)
        )
    loaded = load_checked_recipe(str(run_dir / "recipe.yaml"), overrides)
    _run(loaded, run_dir, resume=True, overwrite=False, output_mode=output_mode,
         rerun=str(run_dir / "recipe.yaml"))


def _run(recipe, output: Path, *, resume: bool, overwrite: bool, output_mode: OutputMode,
         rerun: str) -> None:
    from synergic.experiment import run as run_experiment
    from synergic.training.trainer import TrainingInterrupted

    err = console(stderr=True)
    if output_mode.chatty:
        err.print(f"[bold]synergic[/] {recipe.name}: SDL^{recipe.model.components} of "
                  f"{recipe.model.backbone.name}, {recipe.train.iterations} iterations -> {output}")
    display = TrainingProgress(
        "training", recipe.train.iterations,
        images_per_step=recipe.train.batch_size * recipe.model.components,
        enabled=output_mode.chatty,
    )
    started = time.perf_counter()

    def stage(message: str) -> None:
        if message == "training":
            display.start()
        elif message.startswith("evaluating"):
            display.stop()
        if message != "training" and output_mode.chatty:
            err.print(f"[dim]{message}...[/]")

    def info(line: str) -> None:
        if output_mode.chatty:
            err.print(line, markup=False)

    try:
        result = run_experiment(
            recipe, output, resume=resume, overwrite=overwrite, progress=output_mode.chatty,
            callbacks=[display], on_stage=stage, on_info=info,
        )
    except TrainingInterrupted as stop:
        display.stop()
        error = SynergicError(f"{stop} with: synergic resume {output}")
        error.exit_code = stop.exit_code  # 130 for Ctrl-C, 1 for SIGTERM
        raise error from None
    finally:
        display.stop()
    if output_mode.json:
        output_mode.emit_json({**result.metrics, "run_dir": str(result.run_dir)})
        return
    if output_mode.quiet:
        click.echo(str(result.run_dir))
        return
    out = console()
    aggregate = result.metrics["test"]
    components = result.metrics.get("test_components", [])
    out.print(metrics_table(aggregate, components, f"test metrics of {recipe.name}",
                            result.metrics.get("test_ci"),
                            result.metrics.get("test_components_ci")))
    if "ci" in result.metrics:
        ci = result.metrics["ci"]
        out.print(f"[brackets]: {ci['level']:.0%} interval, bootstrap of the test images "
                  f"({ci['method']}, {ci['n_bootstrap']} resamples)", markup=False)
    line = comparison_line(aggregate, components, result.metrics.get("primary_metric") or "ap")
    if line:
        out.print(line, markup=False)
        if recipe.train.synergic_weight:
            out.print("the plain ensemble to compare with (no synergic signal, lambda = 0): "
                      f"synergic run {rerun} --set train.synergic_weight=0 --output ENSEMBLE_DIR, "
                      f"then: synergic compare ENSEMBLE_DIR {result.run_dir}", markup=False)
        else:
            out.print("this run is the plain ensemble (train.synergic_weight = 0); with the "
                      "synergic signal (the paper's lambda = 3): synergic run "
                      f"{rerun} --set train.synergic_weight=3 --output SDL_DIR, then: synergic "
                      f"compare {result.run_dir} SDL_DIR", markup=False)
    out.print(f"run directory: {result.run_dir}  ({time.perf_counter() - started:.0f} s)",
              markup=False)


TTA_HELP = ("Test-time augmentation: none; flips = the image, its horizontal and its vertical "
            "flip; d4 = the 8 rotations by 90 degrees and flips. Each component's softmax is "
            "averaged over the views before aggregation. Default: the run's train.tta.")


def tta_option(command):
    from synergic.tta import TTA_MODES

    return click.option("--tta", type=click.Choice(TTA_MODES), default=None, help=TTA_HELP)(command)


@click.command(name="eval")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@checkpoint_option
@tta_option
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a key that does not change what the run computes, e.g. "
              "data.root=/new/place (the data moved) or train.device=cpu. Repeatable.")
@output_options
def eval_command(run_dir: Path, split: str, checkpoint: str, tta: str | None, overrides,
                 output_mode: OutputMode) -> None:
    """Re-evaluate a trained run from its checkpoint (by default the one it reports).

    Prints the metrics and writes nothing: the run's metrics.json stays as the run wrote it.
    --quiet prints the aggregate's metrics on one line (name=value ..., then tta=MODE when the
    evaluation averaged over views: --tta, or the run's train.tta); --json prints
    {"run_dir", "split", "checkpoint", "aggregate", "components", "tta", "weights"} (weights:
    "ema" when the run reports its EMA of the weights, else "trained").
    """
    from synergic.rundir import resolve_checkpoint
    from synergic.serving import evaluate_run

    checkpoint = resolve_checkpoint(run_dir, checkpoint)
    metrics = evaluate_run(run_dir, split=split, checkpoint=checkpoint, overrides=overrides,
                           tta=tta)
    if output_mode.json:
        output_mode.emit_json({"run_dir": str(run_dir), "split": split, "checkpoint": checkpoint,
                         **metrics})
    elif output_mode.quiet:
        values = [f"{k}={'n/a' if v is None else f'{v:.4f}'}"
                  for k, v in metrics["aggregate"].items()]
        values += [f"tta={metrics['tta']}"] * (metrics["tta"] != "none")
        click.echo(" ".join(values))
    else:
        what = [f"{checkpoint}.pt"] + ["EMA weights"] * (metrics["weights"] == "ema")
        what += [f"TTA {metrics['tta']}"] * (metrics["tta"] != "none")
        console().print(metrics_table(metrics["aggregate"], metrics["components"],
                                      f"{split} metrics of {run_dir} ({', '.join(what)})"))


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the predictions as CSV here instead of printing them.")
# The choices are synergic.serving.SUBMISSION_FORMATS (not imported here: it imports torch).
@click.option("--format", "csv_format", default="csv", show_default=True,
              type=click.Choice(["csv", "isic2016", "isic2017", "isic2018", "isic2019", "isic2020"]),
              help="csv: image,<class>...,prediction; isicYYYY: that ISIC challenge's submission "
              "CSV (image ids without extension; docs/metrics.md).")
@checkpoint_option
@tta_option
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a key that does not change what the run computes, e.g. "
              "train.device=cpu. Repeatable.")
@output_options
def predict(run_dir: Path, images, output: Path | None, csv_format: str, checkpoint: str,
            tta: str | None, overrides, output_mode: OutputMode) -> None:
    """Classify IMAGES (files or folders) with the trained run in RUN_DIR.

    Prints CSV with the header image,<class>...,prediction: UTF-8, a name holding a comma, quote
    or line break in double quotes, bytes that are not UTF-8 as \\xNN (as in predictions.csv).
    --json prints {"run_dir", "checkpoint", "tta", "classes", "predictions": [{"image",
    "probabilities": {class: p}, "prediction"}]} instead (also with --output, which still
    writes the CSV).

    \b
    --format isicYYYY writes the challenge's submission CSV instead:
      isic2016  ISIC_0000003,<malignant probability> (no header)
      isic2017  image_id,melanoma,seborrheic_keratosis (one task's model: its column only)
      isic2018  image,MEL,NV,BCC,AKIEC,BKL,DF,VASC
      isic2019  image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK (UNK 0.0 for an 8-class model)
      isic2020  image_name,target
    A run whose classes do not fit the format is refused before anything is written.
    """
    import io

    from synergic.data.names import printable_name
    from synergic.rundir import resolve_checkpoint
    from synergic.serving import predict_images, run_tta

    checkpoint = resolve_checkpoint(run_dir, checkpoint)
    tta = run_tta(run_dir) if tta is None else tta
    classes, rows = predict_images(run_dir, list(images), checkpoint=checkpoint, overrides=overrides,
                                   tta=tta)
    buffer = io.StringIO()
    from synergic.data.names import CsvWriter

    writer = CsvWriter(buffer)
    writer.writerow(["image", *classes, "prediction"])
    records = []
    for path, probabilities in rows:
        best = max(range(len(classes)), key=lambda k: probabilities[k])
        writer.writerow([printable_name(path), *(repr(float(p)) for p in probabilities), classes[best]])
        records.append({"image": printable_name(path), "prediction": classes[best],
                        "probabilities": dict(zip(classes, map(float, probabilities)))})
    text = buffer.getvalue()
    if csv_format != "csv":
        from synergic.serving import submission_csv

        text = submission_csv(csv_format, classes, rows)
    if output:
        from synergic.experiment import write_text_atomically

        write_text_atomically(output, text)
        if output_mode.chatty and not output_mode.json:
            console(stderr=True).print(
                f"{len(rows)} predictions written to {printable_name(output)}", markup=False
            )
    if output_mode.json:
        output_mode.emit_json({"run_dir": str(run_dir), "checkpoint": checkpoint, "tta": tta,
                               "classes": classes, "predictions": records})
    elif not output:
        click.echo(text, nl=False)
