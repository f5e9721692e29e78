"""The ``compare`` command: is run B better than run A on the same test images?

Only click and the standard library are imported at the top; numpy, scipy and the run readers are
imported when the command runs, so ``synergic --help`` stays fast. The statistics are
:func:`synergic.stats.paired_comparison`, on two runs through
:func:`synergic.compare.compare_runs`.
"""

from __future__ import annotations

from pathlib import Path

import click

from synergic.cli.output import OutputMode, console, json_option

__all__ = ["compare"]

#: The default of ``--n-bootstrap``, as :data:`synergic.stats.DEFAULT_N_BOOTSTRAP` (not imported
#: here, so that ``synergic --help`` does not import numpy).
_DEFAULT_N_BOOTSTRAP = 1000


@click.command()
@click.argument("run_a", type=click.Path(file_okay=False, path_type=Path))
@click.argument("run_b", type=click.Path(file_okay=False, path_type=Path))
@click.option("--metric", default=None,
              help="The test metric to compare (a key of metrics.json's \"test\"). Default: "
              "the runs' primary metric (metrics.json's primary_metric), or auc where that is ap.")
@click.option("--n-bootstrap", type=click.IntRange(min=1), default=_DEFAULT_N_BOOTSTRAP,
              show_default=True, help="Paired bootstrap resamples of the test images.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the bootstrap.")
@json_option
def compare(run_a: Path, run_b: Path, metric: str | None, n_bootstrap: int, seed: int,
            output_mode: OutputMode) -> None:
    """Compare two finished runs on their common test set: B - A in one metric.

    Prints the difference B - A (positive: B scores higher), its 95 % paired-bootstrap interval
    (the test images resampled jointly for both runs, within each class) and, for the AUC of two
    classes, the p-value of DeLong's test. Refuses runs whose test sets differ. --json prints
    {"metric", "a", "b", "difference", "ci": [lo, hi], "p_value", ...}.

    Given two cross-validations (synergic cv folders) over the same folds, compares their
    out-of-fold predictions (oof_predictions.csv) the same way, once per repeat; --json then
    prints {"metric", "cv_a", "cv_b", "images", "repeats": [...]}.
    """
    from synergic.compare import compare_cross_validations, compare_runs
    from synergic.errors import SynergicError
    from synergic.folders import KIND_NAMES, folder_kind

    kinds = folder_kind(run_a), folder_kind(run_b)
    if "cv" in kinds:
        if kinds != ("cv", "cv"):
            raise SynergicError(
                f"cannot compare {run_a} ({KIND_NAMES[kinds[0]]}) with {run_b} "
                f"({KIND_NAMES[kinds[1]]}): give two runs, or two cross-validations"
            )
        _compare_cross_validations(compare_cross_validations(
            run_a, run_b, metric=metric, n_bootstrap=n_bootstrap, seed=seed), output_mode)
        return
    result = compare_runs(run_a, run_b, metric=metric, n_bootstrap=n_bootstrap, seed=seed)
    if output_mode.json:
        output_mode.emit_json(result)
        return
    out = console()
    name = result["metric"]
    out.print(f"{name} on {result['images']} test images, the same in both runs "
              f"({result['same_data']})", markup=False)
    out.print(f"  A  {_number(result['a'])}  {run_a}", markup=False, soft_wrap=True)
    out.print(f"  B  {_number(result['b'])}  {run_b}", markup=False, soft_wrap=True)
    low, high = result["ci"]
    out.print(f"  B - A = {_number(result['difference'], signed=True)}, "
              f"{result['level']:.0%} interval [{_number(low, signed=True)}, "
              f"{_number(high, signed=True)}] (paired bootstrap of the test images, "
              f"{result['n_bootstrap']} resamples, seed {result['seed']})", markup=False)
    if result["p_value"] is not None:
        out.print(f"  DeLong's test of equal AUCs: p = {result['p_value']:.4g} "
                  f"(z = {result['z']:.3f})", markup=False)
    elif result["note"]:
        out.print(f"  note: {result['note']}", markup=False)


def _compare_cross_validations(result: dict, output_mode: OutputMode) -> None:
    if output_mode.json:
        output_mode.emit_json(result)
        return
    out = console()
    out.print(f"{result['metric']} on the out-of-fold predictions of {result['images']} training "
              "images, in the same folds in both cross-validations", markup=False)
    out.print(f"  A  {result['cv_a']}", markup=False, soft_wrap=True)
    out.print(f"  B  {result['cv_b']}", markup=False, soft_wrap=True)
    for entry in result["repeats"]:
        low, high = entry["ci"]
        line = (f"  repeat {entry['repeat']}: A {_number(entry['a'])}, B {_number(entry['b'])}, "
                f"B - A = {_number(entry['difference'], signed=True)}, {entry['level']:.0%} "
                f"interval [{_number(low, signed=True)}, {_number(high, signed=True)}]")
        if entry["p_value"] is not None:
            line += f", DeLong p = {entry['p_value']:.4g}"
        out.print(line, markup=False, soft_wrap=True)
    first = result["repeats"][0]
    out.print(f"  (paired bootstrap of the images, {first['n_bootstrap']} resamples, seed "
              f"{first['seed']}; each repeat pools its folds' models: see docs/experiments.md)",
              markup=False, soft_wrap=True)


def _number(value, signed: bool = False) -> str:
    if value is None or value != value:  # None or nan
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"
