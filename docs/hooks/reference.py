"""mkdocs hook: the recipe and command-line references, generated at build time.

``docs/reference/recipe.md`` and ``docs/reference/cli.md`` hold a short introduction and a marker
line; this hook replaces the marker with Markdown generated from the pydantic recipe schema
(:mod:`synergic.recipe.schema`) and from the click command (:mod:`synergic.cli`). The references
are therefore rebuilt with the site and cannot drift from the code. ``tests/test_docs.py`` imports
this file to check the generated text.

Markers (alone on a line)::

    <!-- synergic:recipe-reference -->
    <!-- synergic:cli-reference -->
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any, Literal, get_args, get_origin

RECIPE_MARKER = "<!-- synergic:recipe-reference -->"
CLI_MARKER = "<!-- synergic:cli-reference -->"

# Recipe keys whose value is a name looked up in a registry (the same keys that
# synergic.recipe.check_registry_names checks), with the hook that registers the built-in names.
REGISTRY_KEYS = {
    "data.dataset": ("register_datasets", "datasets"),
    "model.backbone.name": ("register_backbones", "backbones"),
    "model.synergic_head.name": ("register_synergic_heads", "heads"),
    "model.aggregator": ("register_aggregators", "aggregators"),
    "train.sampler.name": ("register_pair_samplers", "samplers"),
}


# ---------------------------------------------------------------------------------------- mkdocs


def on_page_markdown(markdown: str, page, config, files) -> str:
    if RECIPE_MARKER in markdown:
        markdown = markdown.replace(RECIPE_MARKER, recipe_reference_markdown())
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference_markdown())
    return markdown


# ---------------------------------------------------------------------------------------- recipe


def _is_section(annotation: Any) -> bool:
    from pydantic import BaseModel

    return inspect.isclass(annotation) and issubclass(annotation, BaseModel)


def _is_mapping(annotation: Any) -> bool:
    return annotation is dict or get_origin(annotation) is dict


def recipe_keys() -> dict[str, Any]:
    """Every key path of the recipe schema (``"train.optimizer.lr"``) and its pydantic field.

    Sections (nested models) are included as well as their keys; keys under a free-form mapping
    (``data.options``) are not, since any name is allowed there.
    """
    from synergic.recipe.schema import Recipe

    keys: dict[str, Any] = {}

    def walk(model, prefix: str) -> None:
        for name, field in model.model_fields.items():
            path = f"{prefix}{name}"
            keys[path] = field
            if _is_section(field.annotation):
                walk(field.annotation, path + ".")

    walk(Recipe, "")
    return keys


def recipe_key_exists(path: str) -> bool:
    """Whether ``path`` (dotted) names a key of the schema, or one under a free-form mapping."""
    keys = recipe_keys()
    if path in keys:
        return True
    parts = path.split(".")
    for end in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:end])
        if head in keys:
            return _is_mapping(keys[head].annotation)
    return False


def _type_text(annotation: Any) -> str:
    if annotation is type(None):
        return "null"
    origin = get_origin(annotation)
    if origin is Literal:
        values = [f"`{v}`" for v in get_args(annotation)]
        return "one of " + ", ".join(values) if len(values) > 1 else f"{values[0]} (only)"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_text(a) for a in get_args(annotation))
    if _is_mapping(annotation):
        return "mapping"
    if _is_section(annotation):
        return "section"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


def _constraints_text(field) -> str:
    import annotated_types as at

    parts = []
    bounds = ((at.Ge, "ge", ">="), (at.Gt, "gt", ">"), (at.Le, "le", "<="), (at.Lt, "lt", "<"))
    for item in field.metadata:
        for cls, attribute, symbol in bounds:
            if isinstance(item, cls):
                parts.append(f"{symbol} {_value_text(getattr(item, attribute))}")
    return ", ".join(parts)


def _value_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value != 0 and abs(value) < 1e-3:
        mantissa, exponent = f"{value:.6e}".split("e")  # 0.00025 -> 2.5e-4, as people write it
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return str(value)


def _default_text(path: str, field) -> str:
    from pydantic_core import PydanticUndefined

    if _is_section(field.annotation):
        link = f"[section](#{_anchor_of_title(path)})"
        return f"**required** {link}" if field.is_required() else link
    if field.is_required():
        return "**required**"
    value = field.default
    if value is PydanticUndefined and field.default_factory is not None:
        value = field.default_factory()
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    return f"`{_value_text(value)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _shorthand_text(model) -> str:
    """What a non-mapping value of this section stands for, found by asking the schema."""
    notes = []
    expanded = model.expand_shorthand("NAME")
    if expanded == {"name": "NAME"}:
        notes.append("a plain string is shorthand for `{name: STRING}`")
    for flag in (True, False):
        value = model.expand_shorthand(flag)
        if isinstance(value, dict):
            text = "{" + ", ".join(f"{k}: {_value_text(v)}" for k, v in value.items()) + "}"
            meaning = f"`{text}`" if value else "the defaults"
            notes.append(f"`{_value_text(flag)}` means {meaning}")
    return "; ".join(notes)


def builtin_names() -> dict[str, list[str]]:
    """The names synergic itself registers for each registry key (plugins add more)."""
    from synergic.plugins import builtin

    names: dict[str, list[str]] = {}
    for key, (hook, _) in REGISTRY_KEYS.items():
        found: list[str] = []

        def register(name, factory=None, description="", _found=found):
            _found.append(name)
            return factory

        getattr(builtin, hook)(register=register)
        names[key] = sorted(found)
    return names


def recipe_reference_markdown() -> str:
    """The recipe reference: one table per section, every key with type, default, description."""
    from synergic.recipe import recipe_to_yaml
    from synergic.recipe.schema import Recipe

    registered = builtin_names()
    out: list[str] = []

    def section(model, path: str, level: int) -> None:
        title = f"`{path}`" if path else "Top level"
        out.append(f"{'#' * level} {title}\n")
        doc = inspect.getdoc(model) or ""
        if doc and path:
            out.append(_rst_to_markdown(doc) + "\n")
        shorthand = _shorthand_text(model)
        if shorthand:
            out.append(f"*Shorthand*: {shorthand}.\n")
        out.append("| key | type | default | description |")
        out.append("|---|---|---|---|")
        nested = []
        for name, field in model.model_fields.items():
            key = f"{path}.{name}" if path else name
            kind = _type_text(field.annotation)
            constraints = _constraints_text(field)
            if constraints:
                kind += f", {constraints}"
            description = field.description or ""
            if key in REGISTRY_KEYS:
                command = REGISTRY_KEYS[key][1]
                names = ", ".join(f"`{n}`" for n in registered[key])
                description += (
                    f" Built in: {names or 'any timm model name'}; plugins add more "
                    f"(`synergic list {command}`)."
                )
            out.append(
                f"| `{key}` | {_cell(kind)} | {_default_text(key, field)} | {_cell(description)} |"
            )
            if _is_section(field.annotation):
                nested.append((field.annotation, key))
        out.append("")
        for child, key in nested:
            section(child, key, level + 1 if path else level)

    section(Recipe, "", 2)
    minimal = load_recipe_from_text("name: my_run\ndata:\n  dataset: isic2016\n")
    out.append("## Every default, written out\n")
    out.append(
        "The minimal recipe `{name: my_run, data: {dataset: isic2016}}` resolved, as "
        "`synergic recipe show` and the run directory's `recipe.yaml` write it:\n"
    )
    out.append("```yaml\n" + recipe_to_yaml(minimal) + "```\n")
    return "\n".join(out)


def load_recipe_from_text(text: str):
    import yaml

    from synergic.recipe import recipe_from_dict

    return recipe_from_dict(yaml.safe_load(text))


def _rst_to_markdown(text: str) -> str:
    """Docstrings use reST double backticks; Markdown reads those as code too. Drop roles."""
    import re

    text = re.sub(r":(?:class|func|meth|mod|attr):`~?([^`]+)`", r"`\1`", text)
    return " ".join(line.strip() if line.strip() else "\n\n" for line in text.splitlines()).replace(
        " \n\n ", "\n\n"
    )


# ------------------------------------------------------------------------------------------- cli


def iter_commands():
    """``(path, command)`` for the ``synergic`` group and every command below it, depth first.

    ``path`` is the list of words after ``synergic`` (``["recipe", "show"]``). Only synergic's own
    commands: plugin commands are added by ``synergic.cli.main`` and are not part of the reference.
    """
    import click

    from synergic.cli import cli

    def walk(command, path):
        yield path, command
        if isinstance(command, click.Group):
            ctx = click.Context(command, info_name=" ".join(["synergic", *path]))
            for name in command.list_commands(ctx):
                yield from walk(command.get_command(ctx, name), [*path, name])

    yield from walk(cli, [])


def _context_for(path):
    import click

    from synergic.cli import cli

    ctx = click.Context(cli, info_name="synergic")
    command = cli
    for name in path:
        command = command.get_command(ctx, name)
        ctx = click.Context(command, info_name=name, parent=ctx)
    return ctx


def cli_reference_markdown() -> str:
    import click

    out: list[str] = []
    for path, command in iter_commands():
        ctx = _context_for(path)
        title = " ".join(["synergic", *path])
        level = 2 if len(path) <= 1 else 3
        out.append(f"{'#' * level} `{title}`\n")
        out.append("```text\n" + command.get_usage(ctx).strip() + "\n```\n")
        help_text = inspect.cleandoc(command.help or "")
        if help_text:
            out.append(_help_to_markdown(help_text) + "\n")
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        if arguments:
            out.append("| argument | type | required |")
            out.append("|---|---|---|")
            for argument in arguments:
                many = " (one or more)" if argument.nargs == -1 else ""
                out.append(
                    f"| `{argument.human_readable_name}` | {_cell(_param_type(argument))}{many} | "
                    f"{'yes' if argument.required else 'no'} |"
                )
            out.append("")
        options = [p for p in command.get_params(ctx) if isinstance(p, click.Option)]
        if options:
            out.append("| option | description |")
            out.append("|---|---|")
            for option in options:
                record = option.get_help_record(ctx)
                if record is None:
                    continue
                names, text = record
                out.append(f"| `{names}` | {_cell(text)} |")
            out.append("")
        if isinstance(command, click.Group):
            ctx_commands = [
                (name, command.get_command(ctx, name)) for name in command.list_commands(ctx)
            ]
            out.append("| command | what it does |")
            out.append("|---|---|")
            for name, sub in ctx_commands:
                link = _anchor_of_title(f"{title} {name}")
                out.append(f"| [`{name}`](#{link}) | {_cell(_summary(sub))} |")
            out.append("")
    return "\n".join(out)


def _param_type(param) -> str:
    import click

    if isinstance(param.type, click.Choice):
        return "one of " + ", ".join(f"`{c}`" for c in param.type.choices)
    if isinstance(param.type, click.Path):
        return "path"
    return param.type.name


def _anchor_of_title(title: str) -> str:
    # toc's default slugify: lower case, drop punctuation, spaces to hyphens.
    import re

    text = re.sub(r"[^\w\s-]", "", title.lower()).strip()
    return re.sub(r"[-\s]+", "-", text)


def _help_to_markdown(text: str) -> str:
    """click help text as Markdown: paragraphs are rewrapped, except those that click itself
    leaves alone (marked with a ``\\b`` line), which become preformatted blocks."""
    blocks = []
    for paragraph in text.split("\n\n"):
        if paragraph.startswith("\b\n"):
            blocks.append("```text\n" + inspect.cleandoc(paragraph[2:]) + "\n```")
        else:
            blocks.append(" ".join(paragraph.split()))
    return "\n\n".join(blocks)


def _summary(command) -> str:
    """The first paragraph of a command's help (click's short help stops at the first period)."""
    text = inspect.cleandoc(command.help or command.short_help or "")
    return " ".join(text.split("\n\n")[0].split())
