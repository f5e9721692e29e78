"""Plugins: entry points, lazy loading, selection, failures, conflicts, commands, docs, example.

Entry points are tested without pip: :func:`write_distribution` lays out what ``pip install``
would leave on ``sys.path`` (a ``<name>-<version>.dist-info`` folder with ``METADATA`` and
``entry_points.txt``, next to the plugin's module), and ``importlib.metadata`` finds it there.
The ``fresh_plugins`` fixture makes synergic forget its plugins before and after each test, so a
test sees exactly the plugins its folder and environment variables select.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

import synergic
from synergic import contracts, registry
from synergic.cli import cli, main
from synergic.errors import SynergicError
from synergic.plugins import (
    HOOK_NAMES,
    PluginLoadWarning,
    builtin,
    loaded_plugins,
    pm,
    register_plugin,
    reset_plugins,
    unregister_plugin,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "plugin-example"
DOCS = REPO / "docs" / "plugins"
WIDE = {"COLUMNS": "250"}  # rich wraps table cells at the terminal width


def write_distribution(
    site: Path, name: str, *, entry_points: dict[str, str], modules: dict[str, str] | None = None,
    version: str = "0.1",
) -> Path:
    """Lay out the distribution ``name`` in ``site`` as pip would, without pip.

    ``entry_points`` maps entry-point names of the ``synergic`` group to modules; ``modules`` maps
    module names to their source. ``importlib.metadata`` finds it once ``site`` is on sys.path.
    """
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = ["[synergic]", *(f"{key} = {value}" for key, value in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    return site


def plugin_module(*, backbones=(), datasets=(), samplers=(), extra: str = "") -> str:
    """Source of a plugin module registering stand-in components under the given names."""
    lines = ["import synergic", "", "def factory(*args, **kwargs):", '    """A stand-in."""', ""]
    for hook, names in (("register_backbones", backbones), ("register_datasets", datasets),
                        ("register_pair_samplers", samplers)):
        if names:
            lines += ["@synergic.hookimpl", f"def {hook}(register):"]
            lines += [f"    register({name!r}, factory)" for name in names]
            lines.append("")
    return "\n".join(lines) + textwrap.dedent(extra)


@pytest.fixture
def fresh_plugins(monkeypatch):
    """No plugin selection from the environment; plugins reloaded before and after the test."""
    monkeypatch.delenv("SYNERGIC_PLUGINS", raising=False)
    monkeypatch.delenv("SYNERGIC_DISABLE_PLUGINS", raising=False)
    commands = set(cli.commands)
    reset_plugins()
    yield
    reset_plugins()  # the next registry read loads the plugins of the restored sys.path
    for name in set(cli.commands) - commands:
        del cli.commands[name]


@pytest.fixture
def site(tmp_path, monkeypatch, fresh_plugins):
    """A folder on sys.path for fake distributions; their modules are forgotten afterwards."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(folder)):
            del sys.modules[name]


def plugin_names() -> list[str]:
    return [info.name for info in loaded_plugins()]


def table_row(output: str, first_cell: str) -> list[str]:
    """The cells of the rich table row starting with ``first_cell``."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{output}")


# -- the built-ins and entry points -----------------------------------------------------------


def test_builtins_register_through_the_hooks_as_the_plugin_synergic(fresh_plugins):
    assert pm.get_plugin("synergic") is None  # nothing is loaded before the first read
    first = loaded_plugins()[0]
    assert (first.name, first.version, first.distribution) == ("synergic", synergic.__version__,
                                                               "synergic")
    assert pm.get_plugin("synergic") is builtin
    assert {"balanced", "random"} <= set(first.registered["pair_samplers"])
    assert {"isic2016", "folder", "csv", "synthetic_lesions"} <= set(first.registered["datasets"])
    for kind, names in first.registered.items():
        for name in names:
            assert registry.ALL[kind].entry(name).origin == "synergic"


def test_an_entry_point_plugin_registers_with_its_name_version_and_distribution(site):
    write_distribution(
        site, "fake-alpha", version="2.5.0", entry_points={"alpha": "fake_alpha"},
        modules={"fake_alpha": plugin_module(backbones=["alpha_net"], datasets=["alpha_data"])},
    )
    info = {p.name: p for p in loaded_plugins()}["alpha"]
    assert (info.version, info.distribution) == ("2.5.0", "fake-alpha")
    assert info.registered == {"backbones": ["alpha_net"], "datasets": ["alpha_data"]}
    entry = registry.backbones.entry("alpha_net")
    assert entry.origin == "alpha" and entry.description == "A stand-in."
    assert entry.factory is sys.modules["fake_alpha"].factory


def test_disable_plugins_loads_none_but_the_builtins(site, monkeypatch):
    write_distribution(site, "fake-alpha", entry_points={"alpha": "fake_alpha"},
                       modules={"fake_alpha": plugin_module(backbones=["alpha_net"])})
    monkeypatch.setenv("SYNERGIC_DISABLE_PLUGINS", "1")
    assert plugin_names() == ["synergic"]
    assert "fake_alpha" not in sys.modules  # not even imported
    assert "alpha_net" not in registry.backbones
    assert "balanced" in registry.pair_samplers


def test_synergic_plugins_selects_the_named_entry_points_only(site, monkeypatch):
    for name in ("alpha", "beta"):
        write_distribution(site, f"fake-{name}", entry_points={name: f"fake_{name}"},
                           modules={f"fake_{name}": plugin_module(backbones=[f"{name}_net"])})
    monkeypatch.setenv("SYNERGIC_PLUGINS", "alpha")
    assert plugin_names() == ["synergic", "alpha"]  # the installed real plugins are left out too
    assert "alpha_net" in registry.backbones and "beta_net" not in registry.backbones
    assert "fake_beta" not in sys.modules


def test_synergic_plugins_naming_an_absent_plugin_warns(site, monkeypatch):
    write_distribution(site, "fake-alpha", entry_points={"alpha": "fake_alpha"},
                       modules={"fake_alpha": plugin_module(backbones=["alpha_net"])})
    monkeypatch.setenv("SYNERGIC_PLUGINS", "alpha, gamma")
    with pytest.warns(PluginLoadWarning, match=r"SYNERGIC_PLUGINS names 'gamma', which is not "
                                               r"installed; installed plugins: .*alpha"):
        assert plugin_names() == ["synergic", "alpha"]


# -- failures ---------------------------------------------------------------------------------


def test_a_plugin_that_fails_to_import_is_skipped_with_a_warning_naming_it(site):
    write_distribution(site, "fake-broken", entry_points={"broken": "fake_broken"},
                       modules={"fake_broken": "raise ImportError('needs libfoo 2')\n"})
    write_distribution(site, "fake-alpha", entry_points={"alpha": "fake_alpha"},
                       modules={"fake_alpha": plugin_module(backbones=["alpha_net"])})
    with pytest.warns(PluginLoadWarning) as caught:
        names = plugin_names()
    assert [str(w.message) for w in caught] == [
        "synergic plugin 'broken' failed to load and was skipped: ImportError: needs libfoo 2"
    ]
    assert "broken" not in names and "alpha" in names
    assert "alpha_net" in registry.backbones and "balanced" in registry.pair_samplers
    result = CliRunner().invoke(cli, ["list", "samplers"], env=WIDE)
    assert result.exit_code == 0 and table_row(result.output, "balanced")[1] == "synergic"


@pytest.mark.parametrize("error", ["RuntimeError", "synergic.SynergicError"])
def test_a_hook_that_raises_is_rolled_back_and_skipped(site, error):
    source = plugin_module(backbones=["half_net"], extra=f"""
        @synergic.hookimpl
        def register_datasets(register):
            raise {error}("the data set module is broken")
    """)
    write_distribution(site, "fake-half", entry_points={"half": "fake_half"},
                       modules={"fake_half": source})
    name = error.rpartition(".")[2]
    with pytest.warns(PluginLoadWarning, match=f"'half' failed to load and was skipped: "
                                               f"{name}: the data set module is broken"):
        assert "half" not in plugin_names()
    assert "half_net" not in registry.backbones  # registered before the failure, then removed
    assert pm.get_plugin("half") is None


def test_a_hook_with_a_wrong_argument_name_is_skipped(site):
    source = """
        import synergic

        @synergic.hookimpl
        def register_backbones(add):
            add("never", print)
    """
    write_distribution(site, "fake-wrong", entry_points={"wrong": "fake_wrong"},
                       modules={"fake_wrong": source})
    with pytest.warns(PluginLoadWarning, match=r"'wrong' failed to load and was skipped: "
                                               r"PluginValidationError: .*add"):
        assert "wrong" not in plugin_names()


def test_a_misspelt_hook_gets_a_warning_with_the_closest_name(site):
    source = """
        import synergic

        @synergic.hookimpl
        def register_backbone(register):
            register("never", print)
    """
    write_distribution(site, "fake-typo", entry_points={"typo": "fake_typo"},
                       modules={"fake_typo": source})
    with pytest.warns(PluginLoadWarning, match=r"'typo' marks 'register_backbone' with @hookimpl, "
                                               r"but synergic has no such hook \(did you mean "
                                               r"'register_backbones'\?\)"):
        assert "typo" in plugin_names()
    assert "never" not in registry.backbones


def test_a_name_taken_by_the_builtins_is_an_error_naming_both_origins(site):
    write_distribution(site, "fake-dup", entry_points={"dup": "fake_dup"},
                       modules={"fake_dup": plugin_module(samplers=["mine", "balanced"])})
    with pytest.raises(SynergicError, match=r"pair sampler 'balanced' is registered twice: "
                                            r"by synergic and by dup"):
        registry.pair_samplers.names()
    # The offending plugin is left out entirely; the built-in keeps its name.
    assert registry.pair_samplers.entry("balanced").origin == "synergic"
    assert "mine" not in registry.pair_samplers
    assert "dup" not in plugin_names()


def test_one_name_from_two_plugins_is_an_error_naming_both(site):
    for name in ("one", "two"):
        write_distribution(site, f"fake-{name}", entry_points={name: f"fake_{name}"},
                           modules={f"fake_{name}": plugin_module(backbones=["twin_net"])})
    with pytest.raises(SynergicError) as caught:
        registry.backbones.names()
    message = str(caught.value)
    assert re.fullmatch(r"backbone 'twin_net' is registered twice: by (one|two) and by (one|two); "
                        r"uninstall or disable one of them \(SYNERGIC_PLUGINS=\.\.\.\)", message)
    assert "by one" in message and "by two" in message


def test_the_command_reports_a_name_conflict_in_one_line(site, capsys):
    write_distribution(site, "fake-dup", entry_points={"dup": "fake_dup"},
                       modules={"fake_dup": plugin_module(samplers=["balanced"])})
    with pytest.raises(SystemExit) as caught:
        main(["list", "samplers"])
    assert caught.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: pair sampler 'balanced' is registered twice")
    assert "Traceback" not in error


# -- registering at run time ------------------------------------------------------------------


class Throwaway:
    """Hook implementations on an object, as a notebook or a test would write them."""

    @synergic.hookimpl
    def register_aggregators(self, register):
        @register("first_only")
        def first_only(logits):
            """The first component's softmax."""
            return logits[0].softmax(-1)

    @synergic.hookimpl
    def register_synergic_heads(self, register):
        register("also_mlp", registry.synergic_heads.get("mlp"), description="the same again")


def test_register_plugin_adds_components_and_unregister_removes_them(fresh_plugins):
    register_plugin(Throwaway(), "throwaway", version="9")
    try:
        assert registry.aggregators.entry("first_only").origin == "throwaway"
        assert registry.aggregators.entry("first_only").description == "The first component's softmax."
        assert registry.synergic_heads.entry("also_mlp").description == "the same again"
        info = {p.name: p for p in loaded_plugins()}["throwaway"]
        assert info.registered == {"synergic_heads": ["also_mlp"], "aggregators": ["first_only"]}
        with pytest.raises(SynergicError, match="a synergic plugin named 'throwaway' is already"):
            register_plugin(Throwaway(), "throwaway")
    finally:
        unregister_plugin("throwaway")
    assert "first_only" not in registry.aggregators and "also_mlp" not in registry.synergic_heads
    assert "throwaway" not in plugin_names()


def test_register_plugin_with_a_taken_name_leaves_nothing_behind(fresh_plugins):
    class Clash:
        @synergic.hookimpl
        def register_aggregators(self, register):
            register("fresh_name", lambda logits: logits[0])
            register("vote", lambda logits: logits[0])

    with pytest.raises(SynergicError, match="aggregator 'vote' is registered twice: by synergic "
                                            "and by clash"):
        register_plugin(Clash(), "clash")
    assert "fresh_name" not in registry.aggregators
    assert registry.aggregators.entry("vote").origin == "synergic"
    assert pm.get_plugin("clash") is None


# -- the command line -------------------------------------------------------------------------


def test_synergic_plugins_lists_versions_and_registrations(site):
    write_distribution(
        site, "fake-alpha", version="2.5.0", entry_points={"alpha": "fake_alpha"},
        modules={"fake_alpha": plugin_module(backbones=["alpha_net"], datasets=["alpha_data"])},
    )
    result = CliRunner().invoke(cli, ["plugins"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert table_row(result.output, "alpha") == [
        "alpha", "2.5.0", "backbones: alpha_net; datasets: alpha_data"
    ]
    builtin_row = table_row(result.output, "synergic")
    assert builtin_row[1] == synergic.__version__
    assert "pair_samplers: balanced, random" in builtin_row[2]


def test_synergic_list_shows_where_each_component_comes_from(site):
    write_distribution(site, "fake-alpha", entry_points={"alpha": "fake_alpha"},
                       modules={"fake_alpha": plugin_module(backbones=["alpha_net"])})
    result = CliRunner().invoke(cli, ["list", "backbones"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert table_row(result.output, "alpha_net")[:3] == ["alpha_net", "alpha", "A stand-in."]
    assert table_row(result.output, "<any timm model>")[1] == "timm"
    result = CliRunner().invoke(cli, ["list"], env=WIDE)
    assert table_row(result.output, "sum_softmax")[1] == "synergic"
    assert table_row(result.output, "isic2016")[1] == "synergic"


def test_register_commands_adds_a_subcommand(site, capsys):
    source = """
        import click
        import synergic

        @synergic.hookimpl
        def register_commands(cli):
            @cli.command()
            @click.argument("who")
            def greet(who):
                "Greet WHO."
                click.echo(f"hello {who}")
    """
    broken = """
        import synergic

        @synergic.hookimpl
        def register_commands(cli):
            raise RuntimeError("no commands today")
    """
    write_distribution(site, "fake-greeter", entry_points={"greeter": "fake_greeter"},
                       modules={"fake_greeter": source})
    write_distribution(site, "fake-grumpy", entry_points={"grumpy": "fake_grumpy"},
                       modules={"fake_grumpy": broken})
    main(["greet", "world"])
    captured = capsys.readouterr()
    assert captured.out == "hello world\n"
    assert ("warning: synergic plugin 'grumpy' could not add its commands: "
            "RuntimeError: no commands today") in captured.err
    main(["--help"])
    assert re.search(r"^\s+greet\s+Greet WHO\.$", capsys.readouterr().out, flags=re.M)


def test_loading_is_lazy(tmp_path):
    """Nothing is imported or registered before the first registry read (a fresh process)."""
    site = write_distribution(tmp_path, "fake-lazy", entry_points={"lazy": "fake_lazy"},
                              modules={"fake_lazy": plugin_module(samplers=["lazy_pairs"])})
    script = """
        import sys
        import synergic.cli
        from synergic import plugins, registry

        def state():
            return ("fake_lazy" in sys.modules, len(plugins.pm.get_plugins()),
                    len(registry.pair_samplers._entries))

        assert state() == (False, 0, 0), state()
        try:
            synergic.cli.main(["--version"])  # discovers the plugins, registers no component
        except SystemExit:
            pass
        assert state() == (True, 2, 0), state()
        assert "torch" not in sys.modules  # `synergic --version` and --help stay fast
        assert "lazy_pairs" in registry.pair_samplers.names()
        assert registry.pair_samplers.entry("lazy_pairs").origin == "lazy"
        print("lazy: ok")
    """
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("SYNERGIC_DISABLE_PLUGINS", None)
    env["SYNERGIC_PLUGINS"] = "lazy"
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("lazy: ok\n")


# -- components registered by reference -------------------------------------------------------

REFERENCE_PLUGIN = '''
    import synergic

    @synergic.hookimpl
    def register_pair_samplers(register):
        register("ref_pairs", "fake_ref_components:RefPairs")
'''
REFERENCE_COMPONENTS = '''
    """What a plugin's component module usually does first: import torch."""
    import torch

    class RefPairs:
        """Pairs drawn by a plugin that registered a reference."""
'''


def test_synergic_list_imports_no_component_module_and_not_torch(tmp_path):
    """`synergic list` in a fresh process: the built-ins' and a plugin's components registered by
    reference are listed with their descriptions, and neither they nor torch, numpy or PIL are
    imported (a sys.modules probe, not a timing); their first use imports them, and the
    descriptions read from the sources are the docstrings of what is then imported."""
    site = write_distribution(
        tmp_path, "fake-ref", entry_points={"refplugin": "fake_ref"},
        modules={"fake_ref": REFERENCE_PLUGIN, "fake_ref_components": REFERENCE_COMPONENTS},
    )
    probe = tmp_path / "probe.json"
    script = f"""
        import contextlib, io, json, sys
        from synergic.cli import main

        listed = io.StringIO()
        with contextlib.redirect_stdout(listed):
            main(["list", "--json"])
        heavy = ["torch", "numpy", "PIL", "timm", "fake_ref_components", "synergic.sampling",
                 "synergic.aggregators", "synergic.data.images", "synergic.data.datasets.folder"]
        imported = [name for name in heavy if name in sys.modules]

        from synergic import registry
        kinds = {{"datasets": "datasets", "samplers": "pair_samplers",
                  "heads": "synergic_heads", "aggregators": "aggregators"}}
        docstrings = {{}}
        for kind, registry_name in kinds.items():
            for name in registry.ALL[registry_name].names():
                doc = (registry.ALL[registry_name].get(name).__doc__ or "").strip()
                docstrings[name] = doc.splitlines()[0].strip() if doc else ""
        json.dump({{"listing": json.loads(listed.getvalue()), "imported": imported,
                   "docstrings": docstrings, "torch_after_use": "torch" in sys.modules}},
                  open({str(probe)!r}, "w"))
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    env.pop("SYNERGIC_DISABLE_PLUGINS", None)
    env["SYNERGIC_PLUGINS"] = "refplugin"  # not the plugins installed in this environment
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    found = json.loads(probe.read_text())
    assert found["imported"] == []
    listed = {e["name"]: e for kind, entries in found["listing"].items() for e in entries
              if kind != "loggers"}  # the csv logger shares its name with the csv data set
    assert listed["ref_pairs"] == {"name": "ref_pairs", "origin": "refplugin",
                                   "description": "Pairs drawn by a plugin that registered a "
                                                  "reference."}
    assert {"isic2016", "folder", "csv", "synthetic_lesions", "balanced", "random", "mlp",
            "sum_softmax", "mean_logits", "max", "vote"} <= set(listed)
    for name, docstring in found["docstrings"].items():
        assert docstring and listed[name]["description"] == docstring, name
    assert found["torch_after_use"]


def test_a_broken_reference_from_a_plugin_is_one_line_naming_it(site, tiny_recipe, capsys):
    write_distribution(site, "fake-typo-ref", entry_points={"typoref": "fake_typo_ref"},
                       modules={"fake_typo_ref": """
        import synergic

        @synergic.hookimpl
        def register_pair_samplers(register):
            register("typo_pairs", "synergic.sampling:BalancedPairSamplr")
    """})
    assert registry.pair_samplers.entry("typo_pairs").origin == "typoref"  # listing works
    with pytest.raises(SystemExit) as caught:
        main(["recipe", "check", str(tiny_recipe), "--set", "train.sampler.name=typo_pairs"])
    assert caught.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the checks' notes
    assert error == (
        "error: pair sampler 'typo_pairs' (registered by typoref) points to "
        "'synergic.sampling:BalancedPairSamplr', which cannot be imported (AttributeError: module "
        "'synergic.sampling' has no attribute 'BalancedPairSamplr'): reinstall typoref or "
        "correct the reference it registers"
    )


def test_a_plugin_registering_a_string_that_is_no_reference_is_skipped(site):
    write_distribution(site, "fake-odd", entry_points={"odd": "fake_odd"},
                       modules={"fake_odd": """
        import synergic

        @synergic.hookimpl
        def register_aggregators(register):
            register("odd_mean", "synergic.aggregators.mean_logits")
    """})
    with pytest.warns(PluginLoadWarning, match=re.escape(
        "synergic plugin 'odd' failed to load and was skipped: SynergicError: aggregator "
        "'odd_mean' from odd: 'synergic.aggregators.mean_logits' is not a reference of the form "
        "'package.module:attribute'")):
        assert "odd" not in plugin_names()
    assert "odd_mean" not in registry.aggregators


def test_the_builtins_are_registered_by_reference_and_objects_still_work(fresh_plugins):
    for kind, names in loaded_plugins()[0].registered.items():
        for name in names:
            assert registry.ALL[kind].entry(name).reference is not None, name
    register_plugin(Throwaway(), "objects")  # registers objects, through the same callback
    try:
        assert registry.aggregators.entry("first_only").reference is None
        assert registry.aggregators.entry("first_only").loaded
    finally:
        unregister_plugin("objects")


# -- contracts --------------------------------------------------------------------------------


def test_the_builtin_components_satisfy_the_contracts():
    from synergic.data.datasets.synthetic import synthetic_lesions
    from synergic.models.backbones import create_backbone
    from synergic.sampling import BalancedPairSampler

    assert contracts.ImageDataset is synergic.data.ImageDataset
    dataset = synthetic_lesions(root=None, split="test", num_test=4, image_size=16)
    assert isinstance(dataset, contracts.ImageDataset)
    backbone = create_backbone("test_efficientnet")
    assert isinstance(backbone, contracts.Backbone)
    sampler = BalancedPairSampler([0, 1, 0, 1], num_streams=2, batch_size=3, seed=0)
    assert isinstance(sampler, contracts.PairSampler)
    assert sampler.sample(0).shape == (2, 3)
    assert not isinstance(object(), contracts.PairSampler)


def test_synergic_data_and_its_file_names_import_no_numpy_pil_or_torch():
    """The command's start imports synergic.data.names; numpy and PIL wait for load_image."""
    code = textwrap.dedent("""
        import sys
        import synergic.data, synergic.data.names
        heavy = ("torch", "numpy", "PIL")
        print(sorted(m for m in heavy if m in sys.modules))
        from synergic.data import RESAMPLE_NAMES, load_image, resize_image
        print(load_image.__module__, sorted(m for m in heavy if m in sys.modules))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.splitlines() == ["[]", "synergic.data.images ['PIL', 'numpy']"], (
        result.stderr
    )


def test_importing_the_contracts_does_not_import_torch():
    code = "import sys, synergic.contracts; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "False", result.stderr


# -- the documentation ------------------------------------------------------------------------


def load_hooks_reference_script():
    import importlib.util

    path = REPO / "docs" / "scripts" / "make_hooks_reference.py"
    spec = importlib.util.spec_from_file_location("make_hooks_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_hook_and_argument_is_in_the_hook_reference():
    page = (DOCS / "hooks.md").read_text()
    sections = dict(re.findall(r"^## (\w+)\n(.*?)(?=^## |\Z)", page, flags=re.M | re.S))
    assert sorted(sections) == HOOK_NAMES
    for name in HOOK_NAMES:
        spec = getattr(pm.hook, name).spec
        for argument in spec.argnames:
            assert f"- `{argument}`: " in sections[name], f"{name}: argument {argument} undocumented"
        assert f"def {name}({', '.join(spec.argnames)})" in sections[name]


def test_the_hook_reference_is_generated_from_the_hook_specs():
    script = load_hooks_reference_script()
    assert (DOCS / "hooks.md").read_text() == script.render(), (
        "docs/plugins/hooks.md is stale: run python docs/scripts/make_hooks_reference.py"
    )


def test_the_writing_a_plugin_page_shows_the_example_as_it_is():
    page = (DOCS / "index.md").read_text()
    blocks = re.findall(r"^```\w*\n(.*?)^```$", page, flags=re.M | re.S)
    files = sorted(p for p in EXAMPLE.rglob("*") if p.suffix in (".py", ".toml"))
    assert [p.relative_to(EXAMPLE).as_posix() for p in files] == [
        "pyproject.toml",
        "synergic_plugin_example/__init__.py",
        "synergic_plugin_example/data.py",
        "synergic_plugin_example/models.py",
    ]
    for path in files:
        assert path.read_text() in blocks, f"docs/plugins/index.md does not show {path} as it is"
    for name in contracts.__all__:
        assert f"`{name}`" in page, f"contract {name} is not on the page"


# -- the example plugin, end to end -----------------------------------------------------------


def example_site(where: Path) -> Path:
    """The example installed as pip would, from its own pyproject.toml, without pip."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    return write_distribution(where, project["name"], version=project["version"],
                              entry_points=project["entry-points"]["synergic"])


def write_single_csv_folder(root: Path) -> Path:
    """Images and labels.csv for the example's single_csv data set: no val rows."""
    from PIL import Image

    rows = ["image,label,split"]
    for index in range(24):
        label = ("dark", "light")[index % 2]
        shade = 40 + 160 * (index % 2) + index
        path = root / "images" / f"{index:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (shade, shade // 2, 60)).save(path)
        rows.append(f"images/{index:03d}.png,{label},{'test' if index >= 16 else 'train'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_the_example_plugin_runs_end_to_end_from_the_command_line(tmp_path, tiny_recipe):
    """The example, found through its entry point, trains from `synergic run ... --set`."""
    site = example_site(tmp_path / "site")
    data = write_single_csv_folder(tmp_path / "data")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(EXAMPLE)])}
    env.pop("SYNERGIC_PLUGINS", None)
    env.pop("SYNERGIC_DISABLE_PLUGINS", None)
    command = [
        sys.executable, "-m", "synergic", "run", str(tiny_recipe), "--output", str(out),
        "--set", "model.backbone.name=small_cnn", "--set", "model.backbone.options={width: 8}",
        "--set", "data.dataset=single_csv", "--set", f"data.root={data}",
        "--set", "data.options={}",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["dark", "light"]
    assert len(metrics["test_components"]) == 2 and "validation" in metrics
    lines = (out / "predictions.csv").read_text().splitlines()
    assert lines[0] == "image,dark,light" and len(lines) == 1 + 8
    assert lines[1].startswith("images/016.png,")

    import torch

    state = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    first_convolutions = [v for k, v in state["model"].items() if k.endswith("features.0.weight")]
    assert first_convolutions and all(v.shape == (8, 3, 3, 3) for v in first_convolutions)


@pytest.fixture
def example_installed(tmp_path, monkeypatch, fresh_plugins):
    """The example plugin on sys.path with its dist-info, as `pip install` would leave it."""
    monkeypatch.syspath_prepend(str(example_site(tmp_path / "site")))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    yield
    for name in list(sys.modules):
        if name.startswith("synergic_plugin_example"):
            del sys.modules[name]


def test_the_example_plugin_is_listed_with_its_origin(example_installed):
    result = CliRunner().invoke(cli, ["plugins"], env=WIDE)
    assert table_row(result.output, "example") == [
        "example", "0.1.0", "backbones: small_cnn; datasets: single_csv"
    ]
    result = CliRunner().invoke(cli, ["list", "datasets"], env=WIDE)
    assert table_row(result.output, "single_csv")[1] == "example"
    from synergic.models.backbones import create_backbone

    with pytest.raises(SynergicError, match="backbone 'small_cnn' has no pretrained weights"):
        create_backbone("small_cnn", pretrained=True)
    assert create_backbone("small_cnn", width=4).num_features == 16
