"""The ``synergic`` command. It knows recipes and run directories, not the loop's insides."""

from __future__ import annotations

import re
import sys
import time
from datetime import datetime
from pathlib import Path

import click

from synergic import __version__
from synergic.errors import SynergicError


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="synergic")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """synergic: synergic deep learning (SDL^n) for medical image classification.

    Start with: synergic run recipes/demo.yaml
    """
    ctx.obj = {"debug": debug}


set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a recipe key (dotted path; the value is read as YAML). Repeatable.",
)


def _load(recipe: str, overrides) -> tuple:
    from synergic.recipe import check_registry_names, load_recipe

    loaded = load_recipe(recipe, overrides)
    check_registry_names(loaded, source=str(recipe))
    return loaded


class ProgressDisplay:
    """A rich progress bar fed by the trainer's callbacks."""

    def __init__(self, total: int, start: int, batch_size: int, components: int) -> None:
        from rich.progress import (
            BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"), console=_console(stderr=True), transient=False,
        )
        self.task = self.progress.add_task("train", total=total, completed=start, losses="")
        self.images_per_step = batch_size * components
        self.last_validation = ""

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def on_log(self, trainer, row) -> None:
        terms = " ".join(
            f"{k}={v:.3f}" for k, v in row.items() if k == "loss" or k.startswith(("ce_", "synergic_"))
        )
        speed = self.images_per_step / row["seconds_per_step"] if row["seconds_per_step"] > 0 else 0
        text = f"{terms} lr={row['lr']:.2e} {speed:.0f} img/s{self.last_validation}"
        self.progress.update(self.task, completed=row["step"], losses=text)

    def on_validation(self, trainer, evaluation) -> None:
        m = evaluation.metrics
        self.last_validation = f" | val ap={m.get('ap', float('nan')):.3f} auc={m.get('auc', float('nan')):.3f}"
        self.progress.console.print(
            f"step {trainer.state.step}: validation "
            + " ".join(f"{k}={v:.4f}" for k, v in m.items())
        )


def _metrics_table(metrics: dict, title: str):
    from rich.table import Table

    test = metrics["test"]
    table = Table(title=title)
    table.add_column("model")
    names = list(test)
    for name in names:
        table.add_column(name, justify="right")

    def fmt(v):
        return "n/a" if v is None else f"{v:.4f}"

    table.add_row("aggregate", *(fmt(test[n]) for n in names))
    for k, component in enumerate(metrics.get("test_components", [])):
        table.add_row(f"component {k + 1}", *(fmt(component.get(n)) for n in names))
    return table


def _default_output(name: str) -> Path:
    return Path("runs") / name / datetime.now().strftime("%Y%m%d-%H%M%S")


@cli.command()
@click.argument("recipe")
@set_option
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory (default: runs/<recipe name>/<timestamp>).")
@click.option("--resume", is_flag=True, help="Continue the run in --output from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace the run in --output.")
@click.option("--devices", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train with this many processes through torch.distributed (one per GPU; "
              "gloo processes on a CPU-only machine). Same as torchrun --nproc-per-node N.")
def run(recipe: str, overrides, output: Path | None, resume: bool, overwrite: bool,
        devices: int) -> None:
    """Train and evaluate RECIPE (a YAML file or a built-in recipe name)."""
    from synergic.training import distributed

    debug = bool((click.get_current_context().obj or {}).get("debug"))
    # A process started by --devices N reports its error to the launcher, which shows it once.
    with distributed.errors_reported_to_launcher(enabled=not debug):
        loaded = _load(recipe, overrides)
        if resume and output is None:
            raise SynergicError("--resume needs --output: the run directory to continue")
        if devices > 1 and not distributed.launched_by_torchrun():
            output = output or _default_output(loaded.name)
            arguments = ["--debug"] * debug + ["run", recipe, *(f"--set={o}" for o in overrides)]
            arguments += [f"--output={output}"] + ["--resume"] * resume + ["--overwrite"] * overwrite
            _launch_distributed(devices, arguments, loaded, output, resume=resume, overwrite=overwrite)
            return
        if distributed.launched_by_torchrun():
            info = distributed.init_distributed(loaded.train.device)
            # Every rank must write to (and rank 0 create) the same directory.
            output = distributed.broadcast_object(output or _default_output(loaded.name))
            if not info.is_main:
                from synergic.experiment import run as run_experiment

                run_experiment(loaded, output, resume=resume, overwrite=overwrite)
                return
        _run(loaded, output or _default_output(loaded.name), resume=resume, overwrite=overwrite)


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


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@set_option
def resume(run_dir: Path, overrides) -> None:
    """Continue the run in RUN_DIR from its last checkpoint (e.g. --set train.iterations=...)."""
    if not (run_dir / "recipe.yaml").is_file():
        raise SynergicError(
            f"nothing to resume: {run_dir} holds no synergic run (no recipe.yaml); "
            "start one with: synergic run RECIPE --output " + str(run_dir)
        )
    loaded = _load(str(run_dir / "recipe.yaml"), overrides)
    _run(loaded, run_dir, resume=True, overwrite=False)


def _run(recipe, output: Path, *, resume: bool, overwrite: bool) -> None:
    from synergic.experiment import run as run_experiment
    from synergic.training.trainer import TrainingInterrupted

    console = _console(stderr=True)
    console.print(f"[bold]synergic[/] {recipe.name}: SDL^{recipe.model.components} of "
                  f"{recipe.model.backbone.name}, {recipe.train.iterations} iterations -> {output}")
    display = ProgressDisplay(
        recipe.train.iterations, 0, recipe.train.batch_size, recipe.model.components
    )
    started = time.perf_counter()

    def stage(message: str) -> None:
        if message == "training":
            display.__enter__()
        elif message.startswith("evaluating"):
            display.__exit__(None, None, None)
        if message != "training":
            console.print(f"[dim]{message}...[/]")

    try:
        result = run_experiment(
            recipe, output, resume=resume, overwrite=overwrite, progress=True,
            callbacks=[display], on_stage=stage, on_info=lambda line: console.print(line, markup=False),
        )
    except TrainingInterrupted as stop:
        display.__exit__(None, None, None)
        raise SynergicError(f"{stop} with: synergic resume {output}") from None
    except BaseException:
        display.__exit__(None, None, None)
        raise
    out = _console()
    out.print(_metrics_table(result.metrics, f"test metrics of {recipe.name}"))
    out.print(f"run directory: {result.run_dir}  ({time.perf_counter() - started:.0f} s)")


checkpoint_option = click.option(
    "--checkpoint", type=click.Choice(["selected", "last", "best"]), default="selected",
    show_default=True,
    help="selected: the model the run reports (metrics.json 'selected'); last or best: that file.",
)


@cli.command(name="eval")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@checkpoint_option
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a key that does not change what the run computes, e.g. "
              "data.root=/new/place (the data moved) or train.device=cpu. Repeatable.")
def eval_command(run_dir: Path, split: str, checkpoint: str, overrides) -> None:
    """Re-evaluate a trained run from its checkpoint (by default the one it reports)."""
    from synergic.rundir import resolve_checkpoint
    from synergic.serving import evaluate_run

    checkpoint = resolve_checkpoint(run_dir, checkpoint)
    metrics = evaluate_run(run_dir, split=split, checkpoint=checkpoint, overrides=overrides)
    _console().print(_metrics_table({"test": metrics["aggregate"], "test_components": metrics["components"]},
                                    f"{split} metrics of {run_dir} ({checkpoint}.pt)"))


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the predictions as CSV here instead of printing them.")
@checkpoint_option
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a key that does not change what the run computes, e.g. "
              "train.device=cpu. Repeatable.")
def predict(run_dir: Path, images, output: Path | None, checkpoint: str, overrides) -> None:
    """Classify IMAGES (files or folders) with the trained run in RUN_DIR.

    Prints CSV with the header image,<class>...,prediction: UTF-8, a name holding a comma, quote
    or line break in double quotes, bytes that are not UTF-8 as \\xNN (as in predictions.csv).
    """
    import csv
    import io

    from synergic.data.names import printable_name
    from synergic.serving import predict_images

    from synergic.rundir import resolve_checkpoint

    checkpoint = resolve_checkpoint(run_dir, checkpoint)
    classes, rows = predict_images(run_dir, list(images), checkpoint=checkpoint, overrides=overrides)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", *classes, "prediction"])
    for path, probabilities in rows:
        best = max(range(len(classes)), key=lambda k: probabilities[k])
        writer.writerow([printable_name(path), *(repr(float(p)) for p in probabilities), classes[best]])
    text = buffer.getvalue()
    if output:
        from synergic.experiment import write_text_atomically

        write_text_atomically(output, text)
        _console(stderr=True).print(
            f"{len(rows)} predictions written to {printable_name(output)}", markup=False
        )
    else:
        click.echo(text, nl=False)


KINDS = {
    "backbones": "backbones", "datasets": "datasets", "samplers": "pair_samplers",
    "heads": "synergic_heads", "aggregators": "aggregators",
}


@cli.command(name="list")
@click.argument("kind", required=False, type=click.Choice(sorted(KINDS)))
def list_command(kind: str | None) -> None:
    """List the registered components and where each comes from."""
    from rich.table import Table

    from synergic import registry

    console = _console()
    for name in [kind] if kind else sorted(KINDS):
        table = Table(title=name, title_justify="left")
        table.add_column("name")
        table.add_column("origin")
        table.add_column("description")
        for entry in registry.ALL[KINDS[name]].entries():
            table.add_row(entry.name, entry.origin, entry.description)
        if name == "backbones":
            import timm

            table.add_row("<any timm model>", "timm", f"{len(timm.list_models())} architectures, "
                          "e.g. resnet50, efficientnet_b0, convnext_tiny (timm.list_models())")
        console.print(table)


@cli.command()
def plugins() -> None:
    """Installed plugins, their versions and what each registered."""
    from rich.table import Table

    from synergic.plugins import loaded_plugins

    table = Table()
    for column in ("plugin", "version", "registered"):
        table.add_column(column)
    for info in loaded_plugins():
        registered = "; ".join(f"{k}: {', '.join(v)}" for k, v in info.registered.items())
        table.add_row(info.name, info.version or "", registered)
    _console().print(table)


@cli.group()
def recipe() -> None:
    """Show or check recipes."""


@recipe.command()
@click.argument("recipe_file", metavar="RECIPE")
@set_option
def show(recipe_file: str, overrides) -> None:
    """Print the resolved RECIPE (every default written out) as YAML.

    A first comment line says which pretrained weights the backbone name resolves to (timm's
    tag, e.g. resnet50 -> resnet50.a1_in1k); the output stays a recipe `synergic run` accepts.
    """
    from synergic.models.backbones import describe_backbone, resolved_backbone
    from synergic.recipe import recipe_to_yaml

    loaded = _load(recipe_file, overrides)
    backbone = loaded.model.backbone
    resolved = resolved_backbone(
        backbone.name, pretrained=backbone.pretrained, weights=backbone.weights
    )
    click.echo(f"# model.backbone: {describe_backbone(resolved)}")
    click.echo(recipe_to_yaml(loaded), nl=False)


@recipe.command()
@click.argument("recipe_file", metavar="RECIPE")
@set_option
def check(recipe_file: str, overrides) -> None:
    """Validate RECIPE without running it."""
    loaded = _load(recipe_file, overrides)
    _console().print(f"{recipe_file}: ok ({loaded.name})")


@recipe.command(name="list")
def recipe_list() -> None:
    """The built-in recipes."""
    from synergic.recipe import builtin_recipe_names

    for name in builtin_recipe_names():
        click.echo(name)


@cli.group()
def data() -> None:
    """Data-set utilities."""


@data.command()
@click.argument("name", type=click.Choice(["isic2016"]))
@click.option("--root", type=click.Path(file_okay=False, path_type=Path),
              help="Where to put it (default: the user cache, or $SYNERGIC_DATA_DIR).")
@click.option("--base-url", hidden=True, help="Fetch the files from this URL (a mirror; tests).")
def download(name: str, root: Path | None, base_url: str | None) -> None:
    """Download a data set (resumable; does nothing if it is already complete)."""
    from synergic.data.download import ISIC2016_BASE_URL, download_isic2016

    folder = download_isic2016(root, base_url=base_url or ISIC2016_BASE_URL, progress=True)
    _console().print(f"{name} is ready in {folder}")


from synergic.cli_experiments import report, sweep  # noqa: E402

cli.add_command(sweep)
cli.add_command(report)


def _register_plugin_commands() -> None:
    # Discovery only imports the plugins' entry modules: `synergic --help` stays fast.
    from synergic.plugins import discover_plugins, pm

    discover_plugins()
    for impl in pm.hook.register_commands.get_hookimpls():
        try:
            impl.function(cli=cli)
        except Exception as error:  # a plugin's command must not break the others
            print(f"warning: synergic plugin '{impl.plugin_name}' could not add its commands: "
                  f"{type(error).__name__}: {error}", file=sys.stderr)


def user_message(error: SynergicError) -> str:
    """The one line to show for ``error``.

    An error raised in a DataLoader worker (``train.num_workers > 0``) is re-raised in the main
    process with the worker's traceback folded into its message; the user's line is the
    original message, on the traceback's last line.
    """
    message = str(error).strip()
    if "\n" in message and "Original Traceback" in message:
        last = message.splitlines()[-1]
        original = re.match(r"^[\w.]*(?:Error|Exception): (.+)$", last)
        if original:
            return original.group(1)
    return message


def _format_warning(message, category, filename, lineno, line=None) -> str:
    # One line for users; the file and line of the warning call mean nothing to them.
    return f"warning: {message}\n"


def main(argv=None) -> None:
    import warnings

    from synergic.data.names import printable_streams

    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    if not debug:
        warnings.formatwarning = _format_warning
    # A path that is not UTF-8 (given on the command line, found in a folder) prints as \xNN.
    printable_streams(sys.stdout, sys.stderr)
    try:
        _register_plugin_commands()
        cli.main(args=argv, prog_name="synergic", standalone_mode=False)
    except click.exceptions.Abort:
        _console(stderr=True).print("aborted")
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Exit as exit_:
        sys.exit(exit_.exit_code)
    except SynergicError as error:
        if debug:
            raise
        from rich.markup import escape  # a message may hold [brackets]: a list, a shape

        message = escape(user_message(error))
        _console(stderr=True).print(f"[bold red]error:[/] {message}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        _console(stderr=True).print("interrupted")
        sys.exit(130)
