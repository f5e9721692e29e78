"""Reading, overriding, checking, writing and comparing recipes.

Every problem a user can cause is a one-line :class:`~synergic.errors.SynergicError` that names the
file (or the ``--set`` option) and the key path, and says what is allowed::

    recipe.yaml:7:3: YAML syntax error: could not find expected ':'
    recipe.yaml: unknown key 'train.batchsize' (did you mean 'train.batch_size'?)
    recipe.yaml: train.batch_size: 0 is not allowed: must be >= 1
    --set train.optimizer.lr=-1: train.optimizer.lr: -1 is not allowed: must be > 0

YAML is read with two changes from PyYAML's defaults: numbers such as ``1e-4`` and ``3e5`` are
floats, as in YAML 1.2 (PyYAML follows YAML 1.1, which wants ``1.0e-4`` and reads ``1e-4`` as a
string), and dates stay strings. Keys that appear twice in one mapping are an error instead of the
last one silently winning.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from synergic.errors import SynergicError, UnknownNameError, closest
from synergic.recipe.schema import Recipe

__all__ = [
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

#: The default keys of :func:`recipe_hash`: the data and the network. A run's identity is wider
#: (``train`` too, see :func:`synergic.rundir.identity_hash`, which resume, sweeps and reports use).
RUN_DEFINING_KEYS: tuple[str, ...] = ("seed", "data", "model")
#: Keys under :data:`RUN_DEFINING_KEYS` that only say where files live or whether to cache them.
NOT_RUN_DEFINING_KEYS: tuple[str, ...] = ("data.download", "data.cache", "data.cache_dir")

# ----------------------------------------------------------------------------------- YAML dialect

_FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.2's floats (exponent without a dot allowed) plus YAML 1.1's sexagesimal and special values,
# so that nothing PyYAML reads as a float today changes meaning.
_FLOAT = re.compile(
    r"""^(?:
        [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
      | [-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
      | [-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
      | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
      | [-+]?\.(?:inf|Inf|INF)
      | \.(?:nan|NaN|NAN)
    )$""",
    re.X,
)


def _use_yaml12_floats(cls: type) -> type:
    # Timestamps go too: a date in `options` would come back from the resolved recipe as a string.
    dropped = (_FLOAT_TAG, "tag:yaml.org,2002:timestamp")
    resolvers = {
        first: [(tag, regexp) for tag, regexp in entries if tag not in dropped]
        for first, entries in cls.yaml_implicit_resolvers.items()
    }
    cls.yaml_implicit_resolvers = resolvers
    cls.add_implicit_resolver(_FLOAT_TAG, _FLOAT, list("-+0123456789."))
    return cls


class _DuplicateKeyError(yaml.MarkedYAMLError):
    pass


@_use_yaml12_floats
class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats that refuses duplicated keys."""

    def construct_mapping(self, node, deep=False):
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKeyError(
                    problem=f"duplicate key '{key}'", problem_mark=key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# The dumper must resolve plain scalars as the loader does: a string "1e-4" is then quoted on
# output instead of coming back as a float.
@_use_yaml12_floats
class _RecipeDumper(yaml.SafeDumper):
    pass


def _yaml_problem(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        problem = error.problem
        if error.context:
            problem += f" ({error.context})"
        return problem
    return str(error).splitlines()[0]


# ------------------------------------------------------------------------------------ built-ins


def builtin_recipe_dir() -> Path:
    """The folder of the built-in recipes.

    A wheel ships them as ``synergic/builtin_recipes/``; a source or editable checkout has them in
    the repository's ``recipes/`` folder next to the package.
    """
    package = Path(__file__).resolve().parent.parent
    installed = package / "builtin_recipes"
    return installed if installed.is_dir() else package.parent / "recipes"


def builtin_recipe_names() -> list[str]:
    """Names of the built-in recipes (without ``.yaml``), sorted."""
    folder = builtin_recipe_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _find_recipe(source: str | Path) -> tuple[Path, str]:
    """The recipe file and the name errors call it by."""
    path = Path(source)
    if path.is_file():
        return path, str(source)
    text = str(source)
    name = text[: -len(".yaml")] if text.endswith(".yaml") else text
    names = builtin_recipe_names()
    if "/" not in text and "\\" not in text and name in names:
        return builtin_recipe_dir() / f"{name}.yaml", f"{name}.yaml"
    hits = closest(name, names, n=1)
    hint = f" (did you mean '{hits[0]}'?)" if hits else ""
    raise SynergicError(
        f"recipe '{text}' not found{hint}: give a path to a YAML file or one of the built-in "
        f"recipes: {', '.join(names) or '(none installed)'}"
    )


# -------------------------------------------------------------------------------------- loading


def load_recipe(source: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read and validate a recipe, then apply ``--set KEY=VALUE`` overrides in order.

    ``source`` is a path to a YAML file or the name of a built-in recipe (``isic2016_sdl2`` or
    ``isic2016_sdl2.yaml``; see :func:`builtin_recipe_names`); the path of an existing file always
    means that file. Raises :class:`SynergicError` with a one-line message.
    """
    path, label = _find_recipe(source)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SynergicError(f"{label}: cannot read the recipe: {error}") from error
    try:
        data = yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
        kind = "" if isinstance(error, _DuplicateKeyError) else "YAML syntax error: "
        raise SynergicError(f"{where}: {kind}{_yaml_problem(error)}") from error
    except yaml.YAMLError as error:
        raise SynergicError(f"{label}: YAML syntax error: {_yaml_problem(error)}") from error
    return _build(data, overrides, label)


def recipe_from_dict(
    data: Mapping[str, Any], overrides: Sequence[str] = (), *, source: str = "recipe"
) -> Recipe:
    """Validate a recipe given as nested mappings (as read from YAML), with overrides.

    Errors are the same one-line :class:`SynergicError` as :func:`load_recipe`'s, naming
    ``source`` instead of a file.
    """
    return _build(copy.deepcopy(data), overrides, source)


def _build(data: Any, overrides: Sequence[str], label: str) -> Recipe:
    if data is None:
        raise SynergicError(
            f"{label}: the recipe is empty: it needs at least 'name' and 'data.dataset' "
            "(see the built-in recipes, e.g. `synergic recipe show demo`)"
        )
    if not isinstance(data, Mapping):
        raise SynergicError(
            f"{label}: a recipe must be a mapping of keys ({', '.join(Recipe.model_fields)}), "
            f"not {_kind(data)}"
        )
    data = dict(data)
    if isinstance(overrides, str):  # one override passed without its list
        overrides = [overrides]
    parsed = [_parse_override(text) for text in overrides]
    for override in parsed:
        _apply_override(data, override)
    try:
        return Recipe.model_validate(data)
    except ValidationError as error:
        problems = error.errors(include_url=False)
        message = _describe(problems[0], label, parsed)
        if len(problems) > 1:
            message += f" (and {len(problems) - 1} more)"
        if problems[0]["type"] == "extra_forbidden":
            raise UnknownNameError(message) from error
        raise SynergicError(message) from error


# ------------------------------------------------------------------------------------ overrides


@dataclass(frozen=True)
class _Override:
    text: str
    path: tuple[str, ...]
    value: Any


def _parse_override(text: str) -> _Override:
    key, equals, raw = text.partition("=")
    if not equals:
        raise SynergicError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.batch_size=16")
    key = key.strip()
    path = tuple(key.split("."))
    if not key or not all(path):
        raise SynergicError(
            f"--set {text!r}: '{key}' is not a dotted key path such as train.optimizer.lr"
        )
    try:
        value = yaml.load(raw, Loader=_RecipeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise SynergicError(
            f"--set {text!r}: the value is not valid YAML: {_yaml_problem(error)} "
            "(quote it in the shell, e.g. --set 'name=\"a: b\"')"
        ) from error
    return _Override(text, path, value)


def _apply_override(data: dict[str, Any], override: _Override) -> None:
    node = data
    for depth, part in enumerate(override.path[:-1]):
        child = node.get(part)
        if child is None:
            child = {}
        elif not isinstance(child, dict):
            # `augment: false` or `sampler: random` take a nested override once spelt out.
            section = _model_at(override.path[: depth + 1])
            expanded = section.expand_shorthand(child) if section is not None else child
            if not isinstance(expanded, dict):
                prefix = ".".join(override.path[: depth + 1])
                raise SynergicError(
                    f"--set {override.text}: cannot set '{'.'.join(override.path)}': "
                    f"'{prefix}' is {_show(child)}, not a mapping"
                )
            child = dict(expanded)
        else:
            child = dict(child)
        node[part] = child
        node = child
    node[override.path[-1]] = override.value


# ------------------------------------------------------------------------------- error messages


def _model_at(path: Sequence[str | int]) -> type[BaseModel] | None:
    """The recipe section at ``path``, or None where the path leaves the typed sections."""
    model: type[BaseModel] = Recipe
    for part in path:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _dotted(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _show(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (Mapping, list, tuple)):
        try:
            text = yaml.dump(value, Dumper=_RecipeDumper, default_flow_style=True, width=10_000)
            text = text.strip().removesuffix("...").strip()
        except yaml.YAMLError:
            text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return repr(value)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {_show(value)}"
    return f"the value {_show(value)}"


_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def _allowed(problem: Mapping[str, Any]) -> str:
    """What is allowed, from a pydantic error."""
    kind, ctx = problem["type"], problem.get("ctx") or {}
    if kind in _BOUNDS:
        name, symbol = _BOUNDS[kind]
        bound = ctx.get(name)
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"must be {symbol} {bound}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        section = _model_at(problem["loc"])
        if section is not None:
            keys = ", ".join(section.model_fields)
            shorthand = ""
            if section.expand_shorthand(True) != True:  # noqa: E712 - a bool shorthand
                shorthand = ", or true/false"
            elif section.expand_shorthand("x") != "x":
                shorthand = ", or just a name"
            return f"must be a mapping with keys {keys}{shorthand}"
        return "must be a mapping"
    message = str(problem["msg"])
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    message = message.replace("Input should be", "must be")
    return message[:1].lower() + message[1:]


def _describe(problem: Mapping[str, Any], label: str, overrides: Sequence[_Override]) -> str:
    loc = tuple(problem["loc"])
    key = _dotted(loc)
    if problem["type"] == "missing":
        return f"{label}: missing required key '{key}'"
    # The value came from the last override that set this key, a section above it, or a key below
    # it (`--set trian.batch_size=8` makes an unknown section 'trian').
    for override in reversed(overrides):
        common = min(len(loc), len(override.path))
        if loc[:common] == override.path[:common]:
            label = f"--set {override.text}"
            break
    if problem["type"] == "extra_forbidden":
        section = _model_at(loc[:-1])
        siblings = list(section.model_fields) if section is not None else []
        parent = _dotted(loc[:-1])
        hits = closest(str(loc[-1]), siblings, n=1)
        if hits:
            hint = f"did you mean '{parent + '.' if parent else ''}{hits[0]}'?"
        else:
            hint = f"valid keys {'of ' + parent if parent else 'at the top level'}: " + ", ".join(
                siblings
            )
        return f"{label}: unknown key '{key}' ({hint})"
    return f"{label}: {key}: {_show(problem.get('input'))} is not allowed: {_allowed(problem)}"


# ------------------------------------------------------------------------------ registry names


def check_registry_names(recipe: Recipe, *, source: str = "recipe") -> None:
    """Check that every registry name in ``recipe`` is registered.

    The schema leaves these names unchecked because plugins add names; call this once the plugins
    are loaded (reading a registry loads them). A backbone may also be any timm model name.
    Raises :class:`~synergic.errors.UnknownNameError` naming ``source``, the key path, the closest
    name and the valid ones.
    """
    from synergic import registry

    problems: list[str] = []
    checks = [
        ("data.dataset", registry.datasets, recipe.data.dataset),
        ("model.backbone.name", registry.backbones, recipe.model.backbone.name),
        ("model.synergic_head.name", registry.synergic_heads, recipe.model.synergic_head.name),
        ("model.aggregator", registry.aggregators, recipe.model.aggregator),
        ("train.sampler.name", registry.pair_samplers, recipe.train.sampler.name),
        *((f"loggers[{i}].name", registry.loggers, logger.name)
          for i, logger in enumerate(recipe.loggers)),
    ]
    for key, names, name in checks:
        if name in names:
            continue
        if names is registry.backbones:
            message = _unknown_backbone(name, names.names())
            if message is None:
                message = _unknown_pretrained_tag(name)
            if message is None:
                continue
        else:
            message = names.unknown_message(name)
        problems.append(f"{key}: {message}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UnknownNameError(f"{source}: {problems[0]}{more}")


def _unknown_pretrained_tag(name: str) -> str | None:
    """None when ``name`` has no tag or timm knows its tag (``resnet50.tv_in1k``); otherwise
    what to say (timm.is_model accepts any tag, ``resnet50.xx`` included)."""
    if "." not in name:
        return None
    from synergic.errors import SynergicError
    from synergic.models.backbones import resolved_backbone

    try:
        resolved_backbone(name, pretrained=False, weights=None)
    except SynergicError as error:
        return str(error).removeprefix(f"backbone '{name}': ")
    return None


def _unknown_backbone(name: str, registered: list[str]) -> str | None:
    """None when timm knows ``name``; otherwise what to say about it."""
    import timm  # only here: importing timm takes a while

    if timm.is_model(name):
        return None
    hits = closest(name, registered + timm.list_models(), n=1)
    hint = f"did you mean '{hits[0]}'? " if hits else ""
    others = f"a registered backbone ({', '.join(registered)}) or " if registered else ""
    return (
        f"unknown backbone '{name}': {hint}give {others}any timm model name "
        "(`synergic list backbones`, timm.list_models())"
    )


# ------------------------------------------------------------------------------------- writing


def recipe_to_yaml(recipe: Recipe) -> str:
    """The resolved recipe as YAML: every key written out, in the schema's order."""
    return yaml.dump(
        recipe.model_dump(mode="json"),
        Dumper=_RecipeDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )


def save_recipe(recipe: Recipe, path: str | Path) -> Path:
    """Write the resolved recipe to ``path`` (parent folders are created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(recipe_to_yaml(recipe), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------- comparing


def _flatten(value: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Leaf values by key path; an empty mapping (``options: {}``) has no leaves."""
    if isinstance(value, Mapping):
        flat: dict[tuple[str, ...], Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, (*prefix, str(key))))
        return flat
    return {prefix: value}


def _under(path: tuple[str, ...], keys: Iterable[str]) -> bool:
    return any(path[: len(k)] == k for k in (tuple(key.split(".")) for key in keys))


def _check_keys(keys: Iterable[str]) -> None:
    for key in keys:
        parts = key.split(".")
        # Everything below a typed section's leaf (an options mapping) is open.
        for depth in range(1, len(parts) + 1):
            section = _model_at(parts[: depth - 1])
            if section is None:
                break
            if parts[depth - 1] not in section.model_fields:
                raise ValueError(f"{key!r} is not a recipe key")


def _selected(
    recipe: Recipe, keys: Iterable[str] | None, ignore: Iterable[str]
) -> dict[tuple[str, ...], Any]:
    ignore = list(ignore)
    _check_keys(ignore)
    if keys is not None:
        keys = list(keys)
        _check_keys(keys)
    flat = _flatten(recipe.model_dump(mode="json"))
    return {
        path: value
        for path, value in flat.items()
        if (keys is None or _under(path, keys)) and not _under(path, ignore)
    }


def recipe_hash(
    recipe: Recipe,
    *,
    keys: Iterable[str] = RUN_DEFINING_KEYS,
    ignore: Iterable[str] = NOT_RUN_DEFINING_KEYS,
) -> str:
    """SHA-256 (hex) of the canonical JSON of the recipe's ``keys`` (dotted paths) less ``ignore``.

    By default the parts that define what a run computes (seed, data, model), so that resuming
    with a changed one can be refused while ``train.iterations`` can still be raised.
    """
    selected = _selected(recipe, keys, ignore)
    canonical = json.dumps(
        sorted([list(path), value] for path, value in selected.items()),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def recipe_differences(
    a: Recipe, b: Recipe, *, keys: Iterable[str] | None = None, ignore: Iterable[str] = ()
) -> list[str]:
    """Dotted keys whose values differ between ``a`` and ``b``, in schema order.

    ``keys`` limits the comparison to those dotted paths (all keys when None), ``ignore`` leaves
    some out: ``recipe_differences(a, b, keys=RUN_DEFINING_KEYS, ignore=NOT_RUN_DEFINING_KEYS)``
    names what made :func:`recipe_hash` change. Keys inside ``options`` mappings are compared one
    by one.
    """
    flat_a, flat_b = _selected(a, keys, ignore), _selected(b, keys, ignore)
    paths = list(flat_a) + [p for p in flat_b if p not in flat_a]

    def same(path: tuple[str, ...]) -> bool:
        if path not in flat_a or path not in flat_b:
            return False
        # As JSON, so that 1 and 1.0 differ here exactly when they change the hash.
        return json.dumps(flat_a[path], sort_keys=True) == json.dumps(flat_b[path], sort_keys=True)

    return [".".join(path) for path in paths if not same(path)]
