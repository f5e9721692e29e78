from __future__ import annotations

import sys

import pytest

from synergic import registry
from synergic.errors import SynergicError, UnknownNameError
from synergic.registry import Registry


def test_register_by_call_and_decorator_then_get_and_list():
    heads = Registry("synergic head")

    @heads.register("tiny")
    def tiny(in_features):
        """A tiny head."""

    def other(in_features): ...

    assert heads.register("other", other, origin="myplugin") is other
    assert heads.get("tiny") is tiny
    assert heads.names() == ["other", "tiny"]
    assert heads.entry("other").origin == "myplugin"
    assert heads.entry("tiny").description == "A tiny head."
    heads.unregister("tiny")
    assert "tiny" not in heads


def test_unknown_name_lists_valid_names_and_closest_match():
    samplers = Registry("pair sampler")
    samplers.register("balanced", lambda: None)
    samplers.register("random", lambda: None)
    with pytest.raises(UnknownNameError) as caught:
        samplers.get("balancd")
    message = str(caught.value)
    assert "unknown pair sampler 'balancd'" in message
    assert "did you mean 'balanced'?" in message
    assert "balanced, random" in message


def test_duplicate_name_names_both_origins():
    kinds = Registry("aggregator")
    kinds.register("mean", lambda x: x, origin="synergic")
    with pytest.raises(SynergicError, match="by synergic and by someplugin"):
        kinds.register("mean", lambda x: x, origin="someplugin")


def test_builtins_arrive_through_the_plugin_hooks():
    assert {"balanced", "random"} <= set(registry.pair_samplers.names())
    assert {"sum_softmax", "mean_logits", "max", "vote"} <= set(registry.aggregators.names())
    assert "mlp" in registry.synergic_heads
    assert registry.aggregators.entry("sum_softmax").origin == "synergic"


# -- components registered by reference ("module:attribute") -----------------------------------

COMPONENTS = '''
"""Stand-in components; importing this module is what a reference defers."""

import sys

sys.modules[__name__].imported_once = True


class GreedyPairs:
    """Pairs the two hardest images.

    More text that is not the summary.
    """

    def build(self):
        """Builds greedily."""


def undocumented(): ...


not_callable = 3
'''


@pytest.fixture
def components(tmp_path, monkeypatch):
    """A module ``fake_components_<n>`` on sys.path, not imported; forgotten afterwards."""
    name = f"fake_components_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(COMPONENTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_reference_is_listed_and_described_without_importing_its_module(components):
    samplers = Registry("pair sampler")
    reference = f"{components}:GreedyPairs"
    assert samplers.register("greedy", reference, origin="myplugin") == reference
    samplers.register("nested", f"{components}:GreedyPairs.build")
    samplers.register("bare", f"{components}:undocumented", description="said here")
    samplers.register("quiet", f"{components}:undocumented")
    entry = samplers.entry("greedy")
    assert (entry.name, entry.origin, entry.reference) == ("greedy", "myplugin", reference)
    assert entry.description == "Pairs the two hardest images."  # read from the source
    assert samplers.entry("nested").description == "Builds greedily."
    assert samplers.entry("bare").description == "said here"
    assert samplers.entry("quiet").description == ""
    assert samplers.names() == ["bare", "greedy", "nested", "quiet"] and "greedy" in samplers
    assert components not in sys.modules and not entry.loaded

    factory = samplers.get("greedy")  # the first use imports it
    assert factory is sys.modules[components].GreedyPairs and entry.loaded
    assert samplers.get("greedy") is factory


def test_an_object_and_a_reference_to_it_are_the_same_component():
    heads = Registry("synergic head")
    heads.register("mlp", "synergic.models.synergic_head:MLPSynergicHead")
    from synergic.models.synergic_head import MLPSynergicHead

    heads.register("mlp_object", MLPSynergicHead)
    assert heads.get("mlp") is heads.get("mlp_object")
    assert heads.entry("mlp").description == heads.entry("mlp_object").description != ""


@pytest.mark.parametrize(
    ("attribute", "reason"),
    [
        ("nowhere_module:thing", "ModuleNotFoundError: No module named 'nowhere_module'"),
        ("{module}:missing", "AttributeError: module '{module}' has no attribute 'missing'"),
        ("{module}:not_callable", "which is a int, not a function or class"),
    ],
)
def test_a_broken_reference_is_one_line_naming_the_plugin_and_the_reference(
    components, attribute, reason
):
    datasets = Registry("dataset")
    reference = attribute.format(module=components)
    datasets.register("broken", reference, origin="myplugin")
    assert datasets.entry("broken").description == ""  # listing a broken reference still works
    with pytest.raises(registry.BrokenReferenceError) as caught:
        datasets.get("broken")
    message = str(caught.value)
    assert message.startswith(f"dataset 'broken' (registered by myplugin) points to '{reference}'")
    assert reason.format(module=components) in message
    assert message.endswith("reinstall myplugin or correct the reference it registers")
    assert "\n" not in message
    assert isinstance(caught.value, SynergicError)


def test_an_import_error_inside_the_referenced_module_is_reported_with_its_cause(tmp_path,
                                                                               monkeypatch):
    (tmp_path / "fake_needs_lib.py").write_text("import not_installed_lib_xyz\n\ndef f(): ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    aggregators = Registry("aggregator")
    aggregators.register("needy", "fake_needs_lib:f", origin="needy_plugin")
    with pytest.raises(registry.BrokenReferenceError,
                       match=r"^aggregator 'needy' \(registered by needy_plugin\) points to "
                             r"'fake_needs_lib:f', which cannot be imported \(ModuleNotFoundError: "
                             r"No module named 'not_installed_lib_xyz'\)"):
        aggregators.get("needy")
    sys.modules.pop("fake_needs_lib", None)


@pytest.mark.parametrize(
    "reference", ["no_colon", "package.module:", ":attribute", "a b:c", "a:b:c", "a.:b", "a:1b", ""]
)
def test_a_string_that_is_not_a_reference_is_refused_at_registration(reference):
    heads = Registry("synergic head")
    with pytest.raises(SynergicError) as caught:
        heads.register("odd", reference, origin="myplugin")
    message = str(caught.value)
    assert message == (f"synergic head 'odd' from myplugin: {reference!r} is not a reference of "
                       "the form 'package.module:attribute'; register the factory or such a "
                       "reference")
    assert "odd" not in heads


def test_is_reference_accepts_dotted_names_on_both_sides():
    assert registry.is_reference("synergic.sampling:BalancedPairSampler")
    assert registry.is_reference("pkg:Outer.inner")
    assert not registry.is_reference("synergic.sampling.BalancedPairSampler")


def test_a_reference_taken_name_is_a_duplicate_like_an_object():
    kinds = Registry("aggregator")
    kinds.register("mean", "synergic.aggregators:mean_logits", origin="synergic")
    with pytest.raises(registry.DuplicateNameError, match="by synergic and by someplugin"):
        kinds.register("mean", lambda x: x, origin="someplugin")


def test_a_broken_reference_registered_in_code_says_to_correct_it():
    heads = Registry("synergic head")
    heads.register("typo", "synergic.models.synergic_head:MLPSynergicHeed")
    with pytest.raises(registry.BrokenReferenceError,
                       match=r"\(registered by user\) .*MLPSynergicHeed'\): "
                             r"correct the reference$"):
        heads.get("typo")
