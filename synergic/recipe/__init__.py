"""Recipes: every setting of a synergic run in one YAML file, validated with pydantic.

>>> from synergic.recipe import load_recipe, recipe_to_yaml
>>> recipe = load_recipe("demo", ["train.iterations=20"])
>>> recipe.train.iterations
20

See ``docs/recipes.md`` for the format and :mod:`synergic.recipe.schema` for every key.
"""

from __future__ import annotations

from synergic.recipe.loading import (
    NOT_RUN_DEFINING_KEYS,
    RUN_DEFINING_KEYS,
    builtin_recipe_dir,
    builtin_recipe_names,
    check_registry_names,
    load_recipe,
    recipe_differences,
    recipe_from_dict,
    recipe_hash,
    recipe_to_yaml,
    save_recipe,
)
from synergic.recipe.schema import Recipe

__all__ = [
    "Recipe",
    "load_recipe",
    "recipe_from_dict",
    "recipe_to_yaml",
    "save_recipe",
    "builtin_recipe_dir",
    "builtin_recipe_names",
    "check_registry_names",
    "recipe_hash",
    "recipe_differences",
    "RUN_DEFINING_KEYS",
    "NOT_RUN_DEFINING_KEYS",
]
