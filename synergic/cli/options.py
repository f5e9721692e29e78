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
