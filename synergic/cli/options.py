"""Options and helpers that several commands share."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a recipe key (dotted path; the value is read as YAML). Repeatable.",
)

checkpoint_option = click.option(
    "--checkpoint", type=click.Choice(["selected", "last", "best"]), default="selected",
    show_default=True,
    help="selected: the model the run reports (metrics.json 'selected'); last or best: that file.",
)


def load_checked_recipe(recipe: str, overrides):
    """Load ``recipe`` (a file or a built-in name) with ``overrides``, its registry names checked."""
    from synergic.recipe import check_registry_names, load_recipe

    loaded = load_recipe(recipe, overrides)
    check_registry_names(loaded, source=str(recipe))
    return loaded


def default_run_dir(name: str) -> Path:
    """``runs/<name>/<timestamp>``: where ``synergic run`` writes when no ``--output`` is given."""
    return Path("runs") / name / datetime.now().strftime("%Y%m%d-%H%M%S")


def launcher_options(runs: str):
    """``--launcher local|slurm`` and ``--launcher-option KEY=VALUE`` (repeatable), as the
    ``launcher`` and ``launcher_options`` parameters; ``runs`` names what one job runs (``run``,
    ``fold``). Build the executor with :func:`make_executor`."""

    def decorate(command):
        command = click.option(
            "--launcher-option", "launcher_options", multiple=True, metavar="KEY=VALUE",
            help="A submitit parameter of the slurm jobs (value read as YAML), e.g. "
                 "timeout_min=120, gpus_per_node=1, slurm_partition=gpu. Repeatable.",
        )(command)
        return click.option(
            "--launcher", type=click.Choice(["local", "slurm"]), default="local",
            show_default=True,
            help=f"local: the {runs}s one after another in this process; slurm: one job per "
                 f"{runs} through submitit (pip install 'synergic[cluster]').",
        )(command)

    return decorate


def cross_validation_options(*, required: bool):
    """``--folds``/``-k``, ``--repeats`` and ``--group-by`` of ``synergic cv`` (``required``)
    and ``synergic sweep`` (optional: each cell a cross-validation), as the ``folds``,
    ``repeats`` and ``group_by`` parameters (see :func:`synergic.cv.plan_cv`)."""
    what = "" if required else " Makes each cell a cross-validation of its recipe."

    def decorate(command):
        command = click.option(
            "--group-by", metavar="KIND",
            help="Keep the images of one group (a kind of the data set's 'groups', e.g. "
                 "patient) in one fold. Default: the data set's only kind of group, if it has "
                 "one; 'none' ignores groups.",
        )(command)
        command = click.option(
            "--repeats", type=click.IntRange(min=1), default=1, show_default=True,
            help="Repetitions of the k-fold split, each a new shuffle (seeded by the recipe's "
                 "seed).",
        )(command)
        return click.option(
            "--folds", "-k", type=click.IntRange(min=2), required=required,
            help="Number of folds k: each run holds out one k-th of the training images as "
                 f"its test set.{what}",
        )(command)

    return decorate


def make_executor(launcher: str, output: Path, options) -> object | None:
    """None for ``local``; for ``slurm``, a ``submitit.AutoExecutor`` writing its job files to
    ``OUTPUT/.submitit``, with the ``KEY=VALUE`` ``options`` (YAML values) as its parameters.

    Raises:
        click.UsageError: ``options`` with ``--launcher local``.
        SynergicError: submitit is not installed, an option is not ``KEY=VALUE``, or submitit
            refuses it.
    """
    import yaml

    from synergic.errors import SynergicError, first_line

    if launcher == "local":
        if options:
            raise click.UsageError("--launcher-option needs --launcher slurm")
        return None
    try:
        import submitit
    except ImportError:
        raise SynergicError(
            "--launcher slurm needs submitit: pip install 'synergic[cluster]'"
        ) from None
    parameters = {}
    for option in options:
        key, equals, value = option.partition("=")
        if not equals or not key.strip():
            raise SynergicError(f"--launcher-option {option!r}: expected KEY=VALUE, e.g. "
                                "timeout_min=120")
        parameters[key.strip()] = yaml.safe_load(value)
    try:
        executor = submitit.AutoExecutor(folder=output / ".submitit", cluster=launcher)
    except RuntimeError as error:  # submitit: 'Could not detect "srun", are you indeed on ...'
        first = first_line(error)
        raise SynergicError(
            f"--launcher {launcher}: submitit cannot submit from this machine ({first}): run "
            "on a Slurm login node, or use --launcher local"
        ) from None
    try:
        executor.update_parameters(**parameters)
    except (ValueError, TypeError) as error:
        raise SynergicError(f"--launcher-option: {first_line(error)}") from None
    return executor
