"""The ``recipe`` command group: ``recipe show``, ``recipe check``, ``recipe list``."""

from __future__ import annotations

import click

from synergic.cli.options import load_checked_recipe, set_option
from synergic.cli.output import console

__all__ = ["recipe", "show", "check", "recipe_list"]


@click.group()
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

    loaded = load_checked_recipe(recipe_file, overrides)
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
    """Check RECIPE as `synergic run` does before training, without training.

    The keys and registry names; the data-set options against the data set's arguments; the
    data set's files, labels and splits (listed, not decoded); the validation split and
    train.select; the model with its weights file and image size; the sampler. Nothing is
    downloaded: ImageNet weights that `run` would fetch are not checked, and data.download is
    not acted on. Prints the classes, the images per split and the backbone, then "ok".
    """
    from synergic.experiment import run as run_experiment

    loaded = load_checked_recipe(recipe_file, overrides)
    notes = console(stderr=True)
    run_experiment(  # the same checks as `run` and the pre-check of `run --devices N`
        loaded, None, check_only=True, download=False,
        on_info=lambda line: notes.print(line, markup=False),
    )
    console().print(f"{recipe_file}: ok ({loaded.name})", markup=False)


@recipe.command(name="list")
def recipe_list() -> None:
    """The built-in recipes."""
    from synergic.recipe import builtin_recipe_names

    for name in builtin_recipe_names():
        click.echo(name)
