"""The plugin as synergic sees it: through its entry point and through create_backbone."""

from __future__ import annotations

import os
import pkgutil
from importlib import metadata

import pytest
import torch

import synergic_efficientnet_lite
from synergic import registry
from synergic.models.backbones import backbone_normalization, create_backbone
from synergic.plugins import register_plugin, unregister_plugin

NAMES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def installed() -> bool:
    return any(
        ep.value == "synergic_efficientnet_lite"
        for ep in metadata.entry_points(group="synergic", name="efficientnet_lite")
    )


def entry_points_enabled() -> bool:
    only = {n.strip() for n in os.environ.get("SYNERGIC_PLUGINS", "").split(",") if n.strip()}
    disabled = os.environ.get("SYNERGIC_DISABLE_PLUGINS", "").strip() not in ("", "0")
    return not disabled and (not only or "efficientnet_lite" in only)


@pytest.fixture
def plugin_registered():
    """The plugin's backbones in synergic's registry: from the entry point, or registered here."""
    if all(name in registry.backbones for name in NAMES):
        yield
        return
    register_plugin(synergic_efficientnet_lite, "efficientnet_lite_test")
    try:
        yield
    finally:
        unregister_plugin("efficientnet_lite_test")


def test_the_installed_entry_point_registers_the_three_backbones():
    if not installed():
        pytest.skip("not installed: pip install -e plugins/synergic-efficientnet-lite")
    if not entry_points_enabled():
        pytest.skip("plugins disabled by SYNERGIC_DISABLE_PLUGINS / SYNERGIC_PLUGINS")
    entries = {entry.name: entry for entry in registry.backbones.entries()}
    for name in NAMES:
        assert entries[name].origin == "efficientnet_lite"
        assert "ImageNet" in entries[name].description


def test_synergic_builds_the_backbone_by_name(plugin_registered):
    backbone = create_backbone("efficientnet_lite0", pretrained=True, drop_rate=0.1)
    assert backbone.num_features == 1280
    assert backbone.drop_rate == 0.1
    # The framework normalises inputs with the backbone's own mean and std, not ImageNet's.
    assert backbone_normalization(backbone) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    with torch.no_grad():
        assert backbone.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 1280)


def test_the_hook_registers_exactly_the_three_factories():
    registered = {}
    synergic_efficientnet_lite.register_backbones(
        register=lambda name, factory, description="": registered.setdefault(name, factory)
    )
    assert sorted(registered) == NAMES
    # By reference ("module:attribute"): synergic imports the module at the first use.
    assert pkgutil.resolve_name(registered["efficientnet_lite2"]) is (
        synergic_efficientnet_lite.efficientnet_lite2
    )
