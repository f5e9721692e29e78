from __future__ import annotations

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
