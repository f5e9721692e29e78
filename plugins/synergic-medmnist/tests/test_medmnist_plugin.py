"""The plugin registers ``medmnist`` through synergic's entry points and hooks."""

from __future__ import annotations

import pkgutil
from importlib import metadata

import pytest

import synergic_medmnist
from synergic_medmnist.dataset import medmnist_dataset


def test_the_hook_registers_the_factory_with_a_description():
    registered = []

    def register(name, factory=None, description=""):
        registered.append((name, factory, description))

    synergic_medmnist.register_datasets(register=register)
    assert len(registered) == 1
    name, factory, description = registered[0]
    # By reference ("module:attribute"): synergic imports the module at the first use.
    assert name == "medmnist" and pkgutil.resolve_name(factory) is medmnist_dataset
    assert "MedMNIST" in description


def test_installed_plugin_is_in_synergics_registry():
    try:
        distribution = metadata.distribution("synergic-medmnist")
    except metadata.PackageNotFoundError:
        pytest.skip("synergic-medmnist is not installed (pip install -e plugins/synergic-medmnist)")
    entry_points = [ep for ep in distribution.entry_points if ep.group == "synergic"]
    assert [(ep.name, ep.value) for ep in entry_points] == [("medmnist", "synergic_medmnist")]

    from synergic import registry
    from synergic.plugins import loaded_plugins

    entry = registry.datasets.entry("medmnist")
    assert entry.origin == "medmnist"
    assert entry.factory is medmnist_dataset
    info = {plugin.name: plugin for plugin in loaded_plugins()}["medmnist"]
    assert info.distribution == "synergic-medmnist"
    assert info.version == synergic_medmnist.__version__
    assert info.registered == {"datasets": ["medmnist"]}
