"""The ``sweep`` and ``report`` commands: the paper's experiments as commands.

Only click and the standard library are imported here; the sweep and report modules (and torch)
are imported when a command runs, so ``synergic --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from synergic.cli.options import cross_validation_options, launcher_options
from synergic.cli.output import OutputMode, console, output_options
from synergic.cli.progress import ManyRunsProgress

__all__ = ["sweep", "report"]


@click.command()
@click.argument("recipe")
@click.option("--grid", "grids", multiple=True, metavar="KEY=V1,V2,...",
              help="A recipe key and the values to try (each read as YAML). Repeatable: the "
                   "cells are every combination.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs per cell, with seeds: the recipe's seed, + 1, ...")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key in every cell (dotted path; value read as YAML). "
                   "Repeatable.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="The sweep folder (default: runs/<recipe name>-sweep). Rerun the same command "
                   "to continue a sweep.")
@click.option("--select-metric", default=None,
              help="The validation metric that selects the best cell (with --folds: its mean "
                   "over the held-out folds). Default: the runs' primary metric (their data "
                   "set's ranking metric; ap unless it names another).")
@cross_validation_options(required=False)
@launcher_options("run")
@output_options
def sweep(
    recipe: str, grids, seeds: int, overrides, output: Path | None, select_metric: str | None,
    folds: int | None, repeats: int, group_by: str | None,
    launcher: str, launcher_options, output_mode: OutputMode,
) -> None:
    """Run RECIPE over a grid of settings and seeds, then summarise (mean and std over seeds,
    the cell selected on validation). With --folds K, each cell is a K-fold cross-validation
    of its recipe instead (as synergic cv), summarised with its 95 % t-interval over the folds.

    \b
    Example (the paper's Fig. 4, lambda chosen on a validation split):
      synergic sweep demo --grid train.synergic_weight=0,1,2,3,4,5 \\
        --set data.validation_fraction=0.2 --seeds 2 --output runs/lambda
    Each run goes to OUTPUT/<key=value,...>/seed<seed>/ (with --folds:
    OUTPUT/<key=value,...>/repeat-R/fold-F/); finished runs are kept and interrupted ones
    resumed when the command is run again. --launcher slurm submits each run that has not
    finished as a job. --quiet prints only the path of summary.json; --json prints
    summary.json's content plus "sweep_dir".
    """
    from synergic.cli.options import make_executor
    from synergic.recipe import load_recipe
    from synergic.sweep import run_sweep

    if output is None:
        output = Path("runs") / f"{load_recipe(recipe, overrides).name}-sweep"
    executor = make_executor(launcher, output, launcher_options)
    display = ManyRunsProgress(lambda run: run.label, enabled=output_mode.chatty)

    try:
        summary = run_sweep(
            recipe, grids, seeds=seeds, folds=folds, repeats=repeats, group_by=group_by,
            overrides=overrides, output=output,
            select_metric=select_metric, on_event=display.on_event, on_stage=display.on_stage,
            progress=output_mode.chatty,
            callbacks=display.callbacks, executor=executor,
        )
    except KeyboardInterrupt:  # planning, or writing the summary: no run was stopped
        from synergic.sweep.execute import interrupted

        raise interrupted("sweep", None, "interrupted by Ctrl-C between runs; finished runs "
                          "are kept") from None
    finally:
        display.close()
    if output_mode.json:
        output_mode.emit_json({**summary, "sweep_dir": str(output)})
    elif output_mode.quiet:
        click.echo(str(output / "summary.json"))
    else:
        _print_summary(summary, output)


def _print_summary(summary: dict, output: Path) -> None:
    from rich import box
    from rich.table import Table

    from synergic.sweep import format_stat, format_stat_interval, reported_metrics

    metric = summary["select_metric"]
    title = f"sweep of {summary.get('recipe')}: mean ± std over seeds"
    shown = format_stat
    if summary.get("folds"):
        repeats = summary.get("repeats", 1)
        title = (f"sweep of {summary.get('recipe')}, each cell a cross-validation "
                 f"({summary['folds']} folds x {repeats} repeat{'s' if repeats != 1 else ''}): "
                 "held-out-fold mean ± std [95 % t-interval] over its fold runs")
        shown = format_stat_interval
    # The title is a line of its own: a table's title wraps at the table's width.
    table = Table(box=box.SIMPLE_HEAD)
    # On a narrow terminal long cell names fold and "0.6536 ± 0.0123" wraps at the "±", rather
    # than columns being cut off.
    table.add_column("cell", overflow="fold", min_width=10)
    # A cell that is a cross-validation is selected on its held-out folds (its "test" sets),
    # not on validation: its validation column would only widen the table.
    folds = bool(summary.get("folds"))
    columns = reported_metrics(metric)  # the metric first when it is not among the usual four
    for column in ["runs" if folds else "seeds", *([] if folds else [f"val {metric}"]),
                   *columns]:
        table.add_column(column, justify="right", overflow="fold")
    for cell in summary["cells"]:
        mark = "* " if cell["cell"] == summary.get("selected") else ""
        validation = ["no split"]
        if folds:
            validation = []
        elif cell["validation"]:
            validation = [shown(cell["validation"].get(metric))]
        table.add_row(mark + cell["cell"], str(len(cell["runs"])), *validation,
                      *(shown(cell["test"].get(m)) for m in columns))
    out = console()
    out.print(title, markup=False, soft_wrap=True)
    out.print(table)
    if summary.get("selected"):
        out.print(f"* selected: {summary['selected']} ({summary['selection_note']})",
                  soft_wrap=True)
    else:
        out.print(f"nothing selected: {summary['selection_note']}", soft_wrap=True)
    if summary.get("folds"):
        out.print("the t-interval treats the folds as independent, which they are not (they "
                  "share training images): read it as optimistic", soft_wrap=True)
    if summary.get("not_in_sweep"):
        out.print(f"kept, not part of this sweep: {', '.join(summary['not_in_sweep'])} (runs of "
                  "an earlier grid in this folder; summary and report leave them out)",
                  markup=False, soft_wrap=True)
    out.print(f"summary: {output / 'summary.md'}, {output / 'summary.json'}", soft_wrap=True)


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="RUN_OR_SWEEP_DIR...",
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="The Markdown report; its figures are written beside it. Default: report.md "
                   "in the run or sweep directory given, or in the folder that holds all of "
                   "several.")
@click.option("--metric", default=None,
              help="The metric shown first, plotted against lambda and against training time. "
              "Default: the runs' primary metric (ap unless their data set names another).")
@click.option("--paper/--no-paper", default=None,
              help="Add the paper's reported numbers (Tables 1 and 2) as reference rows, or "
                   "leave them out. Default: only when every run is on the official ISIC 2016 "
                   "split (900 training, 379 test images).")
@click.option("--n-bootstrap", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Paired bootstrap resamples of the SDL-vs-ensemble comparison (as synergic "
                   "compare).")
@output_options
def report(paths, output: Path | None, metric: str | None, paper: bool | None, n_bootstrap: int,
           output_mode: OutputMode) -> None:
    """Compare runs, sweeps and cross-validations in a Markdown report: a table like the paper's
    Table 1 (with intervals), SDL vs ensemble paired on the same test images, ROC curves
    (Fig. 3), the metric against lambda (Fig. 4) and against SDL^n's training time (Fig. 5),
    calibration, and cross-validation summaries.

    \b
    Example (writes runs/report.md, its figures beside it):
      synergic report runs/lambda runs/components runs/demo-cv

    --quiet prints only the report's path; --json prints {"report", "rows", "cross_validations",
    "figures": {name: path}, "comparisons", "cv_comparisons", "notes"}.
    """
    from rich.markup import escape

    from synergic.data.names import printable_name
    from synergic.report import write_report
    from synergic.sweep import check_metric_name

    if metric is not None:
        check_metric_name(metric, option="--metric")
    result = write_report(list(paths), output, paper=paper, metric=metric,
                          n_bootstrap=n_bootstrap)
    if output_mode.json:
        output_mode.emit_json({
            "report": printable_name(result.path), "rows": len(result.groups),
            "cross_validations": len(result.cross_validations),
            "figures": {name: printable_name(path) for name, path in result.figures.items()},
            "comparisons": result.comparisons,
            "cv_comparisons": result.cv_comparisons,
            "notes": [printable_name(note) for note in result.notes],
        })
        return
    if output_mode.quiet:
        click.echo(printable_name(result.path))
        return
    out = console()
    # soft_wrap: a long path stays on one line, to be copied whole
    out.print(f"report: {printable_name(result.path)} ({_contents(result)})", markup=False,
              soft_wrap=True)
    for name, path in result.figures.items():
        out.print(f"  {name}: {printable_name(path)}", markup=False, soft_wrap=True)
    for note in result.notes:
        out.print(f"[yellow]note:[/] {escape(printable_name(note))}", soft_wrap=True)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _contents(result) -> str:
    """``2 rows, 3 cross-validations``: what a report holds, leaving out what it has none of."""
    parts = []
    if result.groups or not result.cross_validations:
        parts.append(_plural(len(result.groups), "row"))
    if result.cross_validations:
        parts.append(_plural(len(result.cross_validations), "cross-validation"))
    return ", ".join(parts)
