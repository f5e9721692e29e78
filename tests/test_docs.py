"""The documentation agrees with the code.

* every `synergic ...` command shown in a shell block of the docs (or the README) parses with the
  command line: the commands, options, choices and arguments exist; a command that names a
  built-in recipe or a recipe file of the repository also loads it with its `--set` overrides;
* every key given to `--set KEY=...` (or `--grid KEY=...`) anywhere in the docs is a recipe key;
* the nav of mkdocs.yml lists every page in docs/, and every page it lists exists;
* the generated references (docs/hooks/reference.py) cover every recipe key and every command
  and option, and every `::: object` of the API reference can be imported;
* the Python blocks of the docs are valid Python, and the files they include exist.

`mkdocs build --strict` (run by .ci/run) checks the links and renders the pages.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import shlex
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
NOT_PAGES = ("hooks", "scripts")  # folders of docs/ that hold code, not pages (exclude_docs)
SHELL_LANGUAGES = {"bash", "sh", "shell", "console", "zsh"}


def load_hook():
    path = DOCS / "hooks" / "reference.py"
    spec = importlib.util.spec_from_file_location("docs_reference_hook", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOK = load_hook()


def markdown_files() -> list[Path]:
    pages = [
        p for p in sorted(DOCS.rglob("*.md"))
        if p.relative_to(DOCS).parts[0] not in NOT_PAGES
    ]
    return pages + [REPO / "README.md"]


@dataclass
class Block:
    path: Path
    line: int
    language: str
    text: str


def code_blocks(path: Path) -> list[Block]:
    """Fenced code blocks (``` or ~~~, possibly indented inside a list)."""
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = re.match(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)", lines[index])
        if not opening:
            index += 1
            continue
        indent, fence, language = opening.groups()
        body, start = [], index + 1
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            line = lines[index]
            body.append(line[len(indent):] if line.startswith(indent) else line)
            index += 1
        blocks.append(Block(path, start, language.lower(), "\n".join(body)))
        index += 1
    return blocks


def prose(path: Path) -> str:
    """The page without its fenced blocks."""
    text = path.read_text(encoding="utf-8")
    return re.sub(r"^\s*(`{3,}|~{3,}).*?^\s*\1\s*$", "", text, flags=re.S | re.M)


def inline_code(path: Path) -> list[str]:
    return re.findall(r"(?<!`)`([^`\n]+)`(?!`)", prose(path))


def shell_commands(block: Block) -> list[str]:
    """Logical lines of a shell block, continuation lines joined, prompts removed."""
    joined = re.sub(r"\\\n\s*", " ", block.text)
    commands = []
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        if line:
            commands.append(line)
    return commands


def synergic_arguments(command: str) -> list[str] | None:
    """The arguments after `synergic` (or `python -m synergic`), or None for other commands."""
    try:
        tokens = shlex.split(command, comments=True)
    except ValueError:
        return None
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", tokens[0]):  # VAR=value prefixes
        tokens = tokens[1:]
    # The command ends where the shell redirects or pipes its output (`> out.txt`, `| python`).
    for index, token in enumerate(tokens):
        if re.fullmatch(r"\d?>>?(&\d)?|\||&&|;", token):
            tokens = tokens[:index]
            break
    if tokens[:1] == ["synergic"]:
        return tokens[1:]
    for i in range(len(tokens) - 1):
        if tokens[i] == "-m" and tokens[i + 1] == "synergic":
            return tokens[i + 2 :]
    return None


def documented_commands() -> list[tuple[str, list[str], bool]]:
    """(where, arguments, complete) for every synergic command in the docs.

    Commands in shell blocks are complete; an inline `synergic ...` in the text may name a
    command without its arguments (`synergic run` takes a recipe), so missing arguments are
    allowed there.
    """
    found = []
    for path in markdown_files():
        name = path.relative_to(REPO)
        for block in code_blocks(path):
            if block.language in SHELL_LANGUAGES:
                for command in shell_commands(block):
                    arguments = synergic_arguments(command)
                    if arguments is not None:
                        found.append((f"{name}:{block.line}: {command}", arguments, True))
        for span in inline_code(path):
            if span.startswith("synergic "):
                arguments = synergic_arguments(span)
                if arguments is not None:
                    found.append((f"{name}: `{span}`", synopsis_prefix(arguments), False))
    return found


def synopsis_prefix(arguments: list[str]) -> list[str]:
    """The arguments before the first placeholder of a usage synopsis (`[--seeds N]`, `...`)."""
    for index, token in enumerate(arguments):
        if any(mark in token for mark in ("[", "...", "|", "<")):
            kept = arguments[:index]
            while kept and kept[-1].startswith("-"):  # an option whose value was a placeholder
                kept.pop()
            return kept
    return arguments


def the_cli() -> click.Group:
    from synergic import cli as cli_module

    # The commands of installed plugins too, as `synergic` itself has them.
    getattr(cli_module, "_register_plugin_commands", lambda: None)()
    return cli_module.cli


@contextmanager
def paths_need_not_exist():
    """Docs name run folders that earlier commands create: check paths' form, not existence."""
    original = click.Path.convert

    def convert(self, value, param, ctx):
        exists, self.exists = self.exists, False
        try:
            return original(self, value, param, ctx)
        finally:
            self.exists = exists

    click.Path.convert = convert
    try:
        yield
    finally:
        click.Path.convert = original


def parse_command(arguments: list[str], *, complete: bool) -> click.Context | None:
    """Parse like `synergic ARGUMENTS` without running anything; the leaf command's context."""
    with paths_need_not_exist():
        return _parse_command(arguments, complete=complete)


def _parse_command(arguments: list[str], *, complete: bool) -> click.Context | None:
    tokens = list(arguments)
    command: click.Command = the_cli()
    parent: click.Context | None = None
    name = "synergic"
    while isinstance(command, click.Group):
        options = []
        while tokens and tokens[0].startswith("-"):
            options.append(tokens.pop(0))
        if "--help" in options or "-h" in options or "--version" in options:
            return None
        if options:
            parent = command.make_context(name, options + tokens[:1], parent=parent)
        else:
            parent = click.Context(command, info_name=name, parent=parent)
        if not tokens:
            if complete:
                raise click.UsageError(f"'{name}' needs a command", ctx=parent)
            return None
        name = tokens.pop(0)
        sub = command.get_command(parent, name)
        if sub is None:
            raise click.UsageError(f"no such command '{name}'", ctx=parent)
        command = sub
    try:
        return command.make_context(name, tokens, parent=parent)
    except click.exceptions.Exit:  # --help
        return None
    except click.MissingParameter:
        if complete:
            raise
        return None


COMMANDS = documented_commands()


def test_the_docs_show_commands():
    """The collector works: the pages below certainly show these."""
    shown = {" ".join(arguments[:1]) for _, arguments, _ in COMMANDS}
    assert {"run", "recipe", "eval", "data"} <= shown


@pytest.mark.parametrize("where, arguments, complete", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_documented_command_parses(where, arguments, complete):
    try:
        ctx = parse_command(arguments, complete=complete)
    except click.UsageError as error:
        pytest.fail(f"{where}\n  does not parse: {error.format_message()}")
    if ctx is None or not complete:
        return
    command = ctx.command.name
    recipe = ctx.params.get("recipe") or ctx.params.get("recipe_file")
    if command in ("run", "show", "check", "sweep") and recipe and "$" not in recipe:
        from synergic.recipe import builtin_recipe_names, load_recipe

        is_builtin = recipe in builtin_recipe_names()
        is_repo_file = (REPO / recipe).is_file()
        if recipe.startswith("recipes/") and not is_repo_file:
            pytest.fail(f"{where}\n  names {recipe}, which is not in the repository")
        if "/" not in recipe and not recipe.endswith((".yaml", ".yml")) and not is_builtin:
            pytest.fail(f"{where}\n  names the recipe '{recipe}', which is not a built-in recipe")
        if is_builtin or is_repo_file:
            overrides = list(ctx.params.get("overrides", ()))
            load_recipe(recipe if is_builtin else REPO / recipe, overrides)


def set_keys() -> list[tuple[str, str]]:
    """(where, key) for every `--set KEY=` and `--grid KEY=` in shell blocks and inline code."""
    found = []
    pattern = re.compile(r"--(?:set|grid)[ =]+['\"]?([A-Za-z_][\w.]*)=")
    for path in markdown_files():
        name = path.relative_to(REPO)
        texts = [b.text for b in code_blocks(path) if b.language in SHELL_LANGUAGES]
        texts += inline_code(path)
        for text in texts:
            for key in pattern.findall(text):
                if key != key.upper():  # KEY, KEY=VALUE: placeholders
                    found.append((str(name), key))
    return sorted(set(found))


SET_KEYS = set_keys()


def test_set_keys_are_found():
    assert ("docs/recipes.md", "train.optimizer.lr") in SET_KEYS


@pytest.mark.parametrize("where, key", SET_KEYS, ids=[f"{w}:{k}" for w, k in SET_KEYS])
def test_set_key_exists_in_the_recipe_schema(where, key):
    assert HOOK.recipe_key_exists(key), f"{where}: --set {key}=...: no such recipe key"


def test_recipe_key_check_knows_free_form_sections():
    assert HOOK.recipe_key_exists("train.optimizer.lr")
    assert HOOK.recipe_key_exists("data.options.anything")  # data.options is a free mapping
    assert not HOOK.recipe_key_exists("train.batchsize")
    assert not HOOK.recipe_key_exists("train.optimizer.lr.value")


# ------------------------------------------------------------------------------------- the nav


def nav_pages(nav) -> list[str]:
    pages = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            pages += nav_pages(value)
        elif isinstance(value, str) and not value.startswith(("http://", "https://")):
            pages.append(value)
    return pages


def mkdocs_config() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    # mkdocs.yml may hold !!python/name: tags (e.g. for pymdownx): read them as plain text.
    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load((REPO / "mkdocs.yml").read_text(), Loader=Loader)


def test_nav_lists_every_page_and_only_pages_that_exist():
    listed = nav_pages(mkdocs_config()["nav"])
    assert len(listed) == len(set(listed)), "a page is listed twice in the nav"
    on_disk = {
        str(p.relative_to(DOCS)) for p in markdown_files() if p.is_relative_to(DOCS)
    }
    assert sorted(on_disk - set(listed)) == [], "pages missing from the nav of mkdocs.yml"
    assert sorted(set(listed) - on_disk) == [], "nav entries without a page in docs/"


def test_mkdocs_excludes_the_code_folders_and_runs_the_hook():
    config = mkdocs_config()
    for folder in NOT_PAGES:
        assert f"{folder}/" in config["exclude_docs"]
    assert "docs/hooks/reference.py" in config["hooks"]


# ------------------------------------------------------------------------ generated references


def test_recipe_reference_lists_every_key_with_its_default():
    text = HOOK.recipe_reference_markdown()
    keys = HOOK.recipe_keys()
    assert "train.optimizer.lr" in keys and "data.augment.rotation" in keys
    for key in keys:
        assert f"| `{key}` |" in text, f"recipe key {key} missing from the reference"
    assert "| `train.optimizer.lr` | number, > 0 | `1e-4` |" in text
    assert "| `data.dataset` | string | **required** |" in text
    for key in HOOK.REGISTRY_KEYS:
        assert key in keys


def test_recipe_reference_marker_is_on_its_page():
    assert HOOK.RECIPE_MARKER in (DOCS / "reference" / "recipe.md").read_text()
    assert HOOK.CLI_MARKER in (DOCS / "reference" / "cli.md").read_text()
    page = "# Recipe keys\n\n" + HOOK.RECIPE_MARKER + "\n"
    assert HOOK.RECIPE_MARKER not in HOOK.on_page_markdown(page, None, None, None)


def test_cli_reference_lists_every_command_and_option():
    text = HOOK.cli_reference_markdown()
    paths = [" ".join(["synergic", *path]) for path, _ in HOOK.iter_commands()]
    assert "synergic recipe show" in paths and "synergic run" in paths
    for path, command in HOOK.iter_commands():
        title = " ".join(["synergic", *path])
        assert f"`{title}`\n" in text, f"{title} missing from the command-line reference"
        for param in command.params:
            if getattr(param, "hidden", False):
                continue
            for option in getattr(param, "opts", []):
                if option.startswith("-"):
                    assert option in text, f"{title} {option} missing from the reference"


def test_api_reference_objects_can_be_imported():
    targets = []
    for path in markdown_files():
        targets += re.findall(r"^::: ([\w.]+)\s*$", path.read_text(), flags=re.M)
    assert "synergic.models.sdl.SynergicModel" in targets
    for target in targets:
        module_name, _, attribute = target.rpartition(".")
        try:
            module = importlib.import_module(target)
        except ImportError:
            module = importlib.import_module(module_name)
            assert hasattr(module, attribute), f"::: {target}: {module_name} has no {attribute}"
        else:
            assert module is not None


# ------------------------------------------------------------------------------ other contents


def test_python_blocks_are_valid_python():
    problems = []
    for path in markdown_files():
        for block in code_blocks(path):
            if block.language not in ("python", "py") or block.text.lstrip().startswith("--8<--"):
                continue
            try:
                ast.parse(block.text)
            except SyntaxError as error:
                line = block.line + (error.lineno or 1) - 1
                problems.append(f"{path.relative_to(REPO)}:{line}: {error.msg}")
    assert problems == []


def test_included_files_exist():
    for path in markdown_files():
        for included in re.findall(r'--8<-- "([^"]+)"', path.read_text()):
            assert (REPO / included).is_file(), f"{path.relative_to(REPO)} includes {included}"


def test_doc_images_exist():
    for path in markdown_files():
        if not path.is_relative_to(DOCS):
            continue
        for image in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", prose(path)):
            if not image.startswith(("http://", "https://")):
                assert (path.parent / image).is_file(), f"{path.relative_to(REPO)}: {image}"
