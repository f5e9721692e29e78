"""The ``cv`` command: k-fold cross-validation of a recipe over its training data.

Only click and the standard library are imported here; :mod:`synergic.cv` (and torch) are imported
when the command runs, so ``synergic --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from synergic.cli.options import cross_validation_options, launcher_options
from synergic.cli.output import OutputMode, console, output_options
from synergic.cli.progress import ManyRunsProgress

__all__ = ["cv"]


@click.command()
@click.argument("recipe")
@cross_validation_options(required=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key in every fold (dotted path; value read as YAML). "
                   "Repeatable.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="The cross-validation folder (default: runs/<recipe name>-cv). Rerun the "
                   "same command to continue.")
@launcher_options("fold")
@output_options
def cv(
    recipe: str, folds: int, repeats: int, group_by: str | None, overrides, output: Path | None,
    launcher: str, launcher_options, output_mode: OutputMode,
) -> None:
    """Cross-validate RECIPE: stratified k-fold over its training split, each fold a run whose
    test set is the held-out fold; then the mean, std and 95 % t-interval of every test metric
    over the folds, and every training image's out-of-fold probabilities.

    \b
    Example (5 folds, twice, on the demo data):
      synergic cv demo --folds 5 --repeats 2 --output runs/demo-cv
    Each fold goes to OUTPUT/repeat-R/fold-F/; finished folds are kept and interrupted ones
    resumed when the command is run again. Writes OUTPUT/summary.json and
    OUTPUT/oof_predictions.csv. --quiet prints only the path of summary.json; --json prints
    summary.json's content plus "cv_dir".
    """
    from synergic.cli.options import make_executor
    from synergic.cv import run_cv
    from synergic.recipe import load_recipe

    if output is None:
        output = Path("runs") / f"{load_recipe(recipe, overrides).name}-cv"
    executor = make_executor(launcher, output, launcher_options)
    display = ManyRunsProgress(lambda run: run.label, enabled=output_mode.chatty)

    try:
        summary = run_cv(
            recipe, folds=folds, repeats=repeats, group_by=group_by, overrides=overrides,
            output=output, executor=executor, on_event=display.on_event, on_stage=display.on_stage,
            progress=output_mode.chatty, callbacks=display.callbacks,
        )
    except KeyboardInterrupt:  # planning, or writing the summary: no run was stopped
        from synergic.sweep.execute import interrupted

        raise interrupted("cv", None, "interrupted by Ctrl-C between runs; finished runs "
                          "are kept") from None
    finally:
        display.close()
    if output_mode.json:
        output_mode.emit_json({**summary, "cv_dir": str(output)})
    elif output_mode.quiet:
        click.echo(str(output / "summary.json"))
    else:
        _print_summary(summary, output)


def _print_summary(summary: dict, output: Path) -> None:
    from rich import box
    from rich.table import Table

    from synergic.sweep import format_stat

    runs = len(summary["runs"])
    title = (f"cross-validation of {summary.get('recipe')}: {summary['folds']} folds x "
             f"{summary['repeats']} repeat{'s' if summary['repeats'] > 1 else ''}"
             + (f", grouped by {summary['group_by']}" if summary.get("group_by") else ""))
    # The title is a line of its own: a table's title wraps at the table's width (60 columns)
    # even where nothing else does (a file, a pipe: synergic.cli.output.console).
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("test metric")
    table.add_column(f"mean ± std over {runs} runs", justify="right")
    table.add_column("95 % t-interval", justify="right")
    for name, stat in summary["test"].items():
        interval = stat.get("ci")
        text = f"[{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "n/a"
        table.add_row(name, format_stat(stat), text)
    out = console()
    out.print(title, markup=False, soft_wrap=True)
    out.print(table)
    out.print("the t-interval treats the folds as independent, which they are not (they share "
              "training images): read it as optimistic", soft_wrap=True)
    out.print(f"summary: {output / 'summary.json'}; out-of-fold predictions: "
              f"{output / summary['oof_predictions']}", soft_wrap=True)
